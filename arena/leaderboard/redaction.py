"""Personal data out of released texts: emails, phones, IPs, cards, IBANs, IDs and addresses.

Each kind is found by a cheap pattern and then confirmed by a validator where one exists, so that
ordinary numbers (dates, prices, versions, code) stay as they were:

- email: the usual address syntax, looked for only around each "@";
- phone: libphonenumber (the `phonenumbers` port) parses each phone-shaped run of digits and
  keeps it if it is a valid number: internationally when written with "+" or "00", otherwise as
  a national number of the regions whose habits its shape matches (a leading trunk "0" for most
  of Europe and Asia, North American, Chinese, Spanish and Italian mobile shapes without one);
- IP: IPv4 and IPv6 literals the `ipaddress` module accepts (loopback and unspecified kept);
- card: 13 to 19 digits, grouped or not, with a card network's prefix and a valid Luhn digit;
- IBAN: country, check digits and account, valid by `stdnum.iban` (format and mod 97);
- national ID: US SSN, Spanish DNI/NIE, Italian codice fiscale, French NIR, Chinese resident ID,
  Brazilian CPF, Indian Aadhaar, each checked by its `stdnum` validator;
- postal address: patterns only (no validator exists): a house number with an English, French,
  German or Spanish street word, UK postcodes, Chinese road-and-number addresses, and a postcode
  followed by a capitalised place name.

Everything here is pure and offline (no model, no network); every pattern is bounded, so a text
costs time linear in its length.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Final

import phonenumbers
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.cn import ric
from stdnum.es import nie, nif
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.us import ssn

EMAIL: Final = "[EMAIL]"
PHONE: Final = "[PHONE]"
IP: Final = "[IP]"
CARD: Final = "[CARD]"
IBAN: Final = "[IBAN]"
NATIONAL_ID: Final = "[NATIONAL_ID]"
ADDRESS: Final = "[ADDRESS]"
PLACEHOLDERS: Final = (EMAIL, PHONE, IP, CARD, IBAN, NATIONAL_ID, ADDRESS)

Span = tuple[int, int, str]

# ---------------------------------------------------------------- email

# RFC 5321 bounds: 64 characters before the "@", 255 after.
_LOCAL_MAX: Final = 64
_DOMAIN_MAX: Final = 255
# ASCII only (re.ASCII): in Chinese or Japanese text the address touches the words around it.
_EMAIL = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[A-Za-z0-9](?:[\w-]{0,61}[A-Za-z0-9])?\.){1,10}"
    r"[A-Za-z]{2,24}(?![\w-])",
    re.ASCII,
)


def _emails(text: str) -> Iterator[Span]:
    # Only the window around each "@" is searched: a long run of word characters without one
    # would otherwise be tried from every position.
    at = text.find("@")
    while at != -1:
        start = max(0, at - _LOCAL_MAX)
        found = _EMAIL.search(text, start, min(len(text), at + _DOMAIN_MAX))
        while found is not None and found.end() <= at:
            found = _EMAIL.search(text, found.end(), min(len(text), at + _DOMAIN_MAX))
        if found is not None and found.start() <= at:
            local_start = found.start()
            # The local part may not start with a dot or run on from a word.
            while local_start < at and text[local_start] == ".":
                local_start += 1
            yield local_start, found.end(), EMAIL
            at = text.find("@", found.end())
        else:
            at = text.find("@", at + 1)


# ---------------------------------------------------------------- IBAN

_IBAN = re.compile(
    r"(?<![\w-])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]{4}){2,7}(?:[ -]?[A-Za-z0-9]{1,4})?(?![\w-])",
    re.ASCII,
)
_IBAN_GROUP_END = re.compile(r"[ -]?[A-Za-z0-9]{1,4}$")


def _ibans(text: str) -> Iterator[Span]:
    for found in _IBAN.finditer(text):
        candidate = found.group()
        # A word after the account ("DE89 3704 ... 00 BIC") may join the run: shorten it a
        # group at a time until the rest is a valid IBAN.
        while len(candidate) >= 15:
            if iban.is_valid(candidate):
                yield found.start(), found.start() + len(candidate), IBAN
                break
            shorter = _IBAN_GROUP_END.sub("", candidate)
            if shorter == candidate:
                break
            candidate = shorter


# ---------------------------------------------------------------- payment cards

_CARD = re.compile(
    r"(?<![\d.,-])(?:\d{4}(?:[ -]?\d{4}){2}(?:[ -]?\d{1,4}){1,2}|\d{4}[ -]?\d{6}[ -]?\d{4,5})(?![\d-]|[.,]\d)",
    re.ASCII,
)
# Issuer prefixes of the networks that use Luhn: Visa 4, Mastercard 51-55 and 2221-2720, Amex
# 34/37, Diners 30/36/38, Discover and UnionPay 6, JCB 35. Other first digits are not cards
# (a 13-digit millisecond timestamp starts with 1).
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[04-8]|6")


def _cards(text: str) -> Iterator[Span]:
    for found in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", found.group())
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn.is_valid(digits):
            yield found.start(), found.end(), CARD


# ---------------------------------------------------------------- IP addresses

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?:%[\w.]{1,16})?(?![\w:])",
    re.ASCII,
)


def _public_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    # The loopback and the unspecified address name nobody and fill every networking answer.
    return not (address.is_loopback or address.is_unspecified)


def _ips(text: str) -> Iterator[Span]:
    if "." in text:
        for found in _IPV4.finditer(text):
            if _public_address(found.group()):
                yield found.start(), found.end(), IP
    if ":" in text:
        for found in _IPV6.finditer(text):
            candidate = found.group()
            # "dead::beef" is an address too, and a C++ scope; real ones carry digits.
            if any(c.isdigit() for c in candidate) and _public_address(candidate):
                yield found.start(), found.end(), IP


# ---------------------------------------------------------------- national identity numbers

_ID_PATTERNS: Final[tuple[tuple[str, Callable[[str], bool]], ...]] = (
    (r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])", ssn.is_valid),
    (r"(?<![\w-])\d{8}-?[A-Za-z](?![\w-])", nif.is_valid),
    (r"(?<![\w-])[XYZxyz]-?\d{7}-?[A-Za-z](?![\w-])", nie.is_valid),
    (r"(?<!\w)[A-Za-z]{6}\d{2}[A-Za-z]\d{2}[A-Za-z]\d{3}[A-Za-z](?!\w)", codicefiscale.is_valid),
    (r"(?<![\w-])[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\w-])", nir.is_valid),
    (r"(?<![\w-])\d{17}[\dXx](?![\w-])", ric.is_valid),
    (r"(?<![\w.-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\w-])", cpf.is_valid),
    (r"(?<![\w-])[2-9]\d{3} \d{4} \d{4}(?![\w-])", aadhaar.is_valid),
)
_IDS: Final = tuple((re.compile(pattern, re.ASCII), is_valid) for pattern, is_valid in _ID_PATTERNS)


def _national_ids(text: str) -> Iterator[Span]:
    for pattern, is_valid in _IDS:
        for found in pattern.finditer(text):
            if is_valid(found.group()):
                yield found.start(), found.end(), NATIONAL_ID


# ---------------------------------------------------------------- phone numbers

# A phone-shaped run: an optional "+" or "(", digits in groups joined by one separator each
# (space, dot, dash, slash, parentheses), ending on a digit.
_PHONE = re.compile(
    r"(?<![\w+.,/-])(?:\+ ?|\( ?)?\d{1,15}\)?(?:(?:[ \u00a0.\-/]|\) ?| \()\d{1,10}\)?){0,7}"
    r"(?!\w|[.,]\d|-\d)",
    re.ASCII,
)
_SEPARATORS = re.compile(r"[^\d+]")
_DATE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d\d([./-])[01]?\d\1[0-3]?\d|[0-3]?\d([./-])[01]?\d\2(?:19|20)\d\d)(?!\d)"
)
# Where no "+" or "00" says the country, the number's shape says which regions to try.
_TRUNK_ZERO_REGIONS: Final = (
    "FR", "DE", "GB", "IT", "NL", "BE", "CH", "AT", "SE", "CN", "JP", "KR", "IN", "AU", "BR"
)  # fmt: skip
_NO_TRUNK_REGIONS: Final = ("US", "CN", "ES", "IT")
MIN_PHONE_DIGITS: Final = 7


def _valid_number(candidate: str, regions: tuple[str | None, ...]) -> bool:
    for region in regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def _is_phone(candidate: str) -> bool:
    digits = _SEPARATORS.sub("", candidate).lstrip("+")
    if not MIN_PHONE_DIGITS <= len(digits) <= 17:
        return False
    if candidate.count(".") == 1 or _DATE.search(candidate):
        return False  # a decimal or a date
    if "." in candidate and any(len(g) > 4 for g in candidate.split(".")):
        return False  # a version or a dotted number, not 415.555.0132
    if candidate.startswith("+"):
        return _valid_number(candidate, (None,))
    if digits.startswith("00"):
        return _valid_number("+" + digits[2:], (None,))
    if digits.startswith("0"):
        return _valid_number(candidate, _TRUNK_ZERO_REGIONS)
    if len(digits) < 9:
        # A local number without its area code looks like any other figure.
        return False
    return _valid_number(candidate, _NO_TRUNK_REGIONS)


def _phones(text: str) -> Iterator[Span]:
    for found in _PHONE.finditer(text):
        candidate = found.group()
        start = found.start()
        if candidate.startswith("(") and (
            ")" not in candidate or (candidate.endswith(")") and candidate.count(")") == 1)
        ):
            # Brackets around the whole number, or an opening one before it ("(+33 6...)").
            unwrapped = candidate[1:].rstrip(")").strip()
            start += len(candidate) - len(unwrapped)
            candidate = unwrapped
        if _is_phone(candidate):
            yield start, start + len(candidate), PHONE


# ---------------------------------------------------------------- postal addresses

_CAP = r"[A-ZÀ-ÖØ-Þ][\w'’-]{1,30}"
_ADDRESSES: Final = (
    # 221B Baker Street, 1600 Pennsylvania Avenue NW
    re.compile(
        rf"(?<![\w.,])\d{{1,5}}[A-Za-z]?,? (?:{_CAP} ){{1,4}}"
        r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl"
        r"|Terrace|Way|Square|Sq|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Gardens)\b\.?"
        r"(?: (?:NW|NE|SW|SE|N|S|E|W)\b)?"
    ),
    # 12 rue de la Paix, 5 bis avenue Victor Hugo
    re.compile(
        r"(?<![\w.,])\d{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|av\.|boulevard|bd|place|allée"
        r"|impasse|chemin|quai|cours|route)(?: (?:de la|de l'|des|du|de|d'|la|le|les))?"
        rf" ?(?:{_CAP})(?: (?:{_CAP}|de|du|des|la|le))" + r"{0,3}"
    ),
    # Hauptstraße 5, Unter den Linden 77 is missed; Calle Mayor 10 / C/ Alcalá, 45
    re.compile(
        r"(?<!\w)[A-ZÄÖÜ][a-zäöüß-]{2,30}(?:straße|strasse|str\.|weg|platz|allee|gasse|ring"
        r"|damm|ufer|chaussee) \d{1,4}[a-z]?(?!\w)"
    ),
    re.compile(
        r"(?<!\w)(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Camino|Carrera)"
        rf" (?:(?:de la|del|de) )?{_CAP}(?: {_CAP}){{0,3}},? (?:nº ?|n\.º ?|no\. ?)?\d{{1,4}}(?!\w)"
    ),
    # SW1A 1AA, EC1A 1BB
    re.compile(r"(?<!\w)(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[ABD-HJLNP-UW-Z]{2}(?!\w)"),
    # 北京市朝阳区建国路88号
    re.compile(
        r"[\u4e00-\u9fff]{2,12}(?:路|街|道|巷|弄|胡同)[\d０-９]{1,5}(?:号|號)"
        r"(?:[\d０-９]{1,4}(?:室|楼|栋))?"
    ),
    # 75011 Paris, 10115 Berlin, 28013 Madrid, or a US city with its state and ZIP code
    re.compile(r"(?<![\w.,-])\d{5} (?:[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'-]{2,30})(?:[ -][A-Z][a-zà-ÿ-]+)?"),
    re.compile(rf"(?<!\w){_CAP}(?: {_CAP})?, [A-Z]{{2}} \d{{5}}(?:-\d{{4}})?(?!\w)"),
)


def _addresses(text: str) -> Iterator[Span]:
    for pattern in _ADDRESSES:
        for found in pattern.finditer(text):
            yield found.start(), found.end(), ADDRESS


# ---------------------------------------------------------------- all together

# Earlier finders win where two claim the same characters: an email's digits are no phone.
_FINDERS: Final = (_emails, _ibans, _cards, _national_ids, _ips, _phones, _addresses)
_HAS_DIGIT = re.compile(r"\d")


def find_personal_data(text: str) -> list[Span]:
    """The spans (start, end, placeholder) of personal data in `text`, in text order."""
    claimed: list[Span] = []
    digits = _HAS_DIGIT.search(text) is not None
    for finder in _FINDERS:
        if not digits and finder is not _emails:
            continue
        for start, end, kind in finder(text):
            if all(end <= s or start >= e for s, e, _ in claimed):
                claimed.append((start, end, kind))
    return sorted(claimed)


def redact(text: str) -> str:
    """`text` with each piece of personal data replaced by its placeholder ([EMAIL], [PHONE]...)."""
    spans = find_personal_data(text)
    if not spans:
        return text
    parts = []
    at = 0
    for start, end, kind in spans:
        parts.append(text[at:start])
        parts.append(kind)
        at = end
    parts.append(text[at:])
    return "".join(parts)
