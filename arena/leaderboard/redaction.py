"""Personal data out of released texts: emails, phones, IPs, cards, IBANs, IDs and addresses.

Each kind is found by a cheap pattern and then confirmed by a validator where one exists, so that
ordinary numbers (dates, prices, versions, code) stay as they were:

- email: the usual address syntax (ASCII), looked for only around each "@";
- phone: libphonenumber (the `phonenumbers` port) parses each phone-shaped run of digits and
  keeps it if it is a valid number: internationally when written with "+" or "00", otherwise as
  a national number of the regions whose habits its shape matches (a leading trunk "0": France,
  Germany, the UK, Italy, the Netherlands, Belgium, Switzerland, Austria, Sweden, China, Japan,
  Korea, India, Australia, Brazil; without one: North American ten digits, Chinese mobiles,
  Spanish nine digits, Italian mobiles);
- IP: IPv4 and IPv6 literals the `ipaddress` module accepts (loopback and unspecified kept);
- card: 13 to 19 digits, grouped or not, with a card network's prefix and a valid Luhn digit;
- IBAN: country, check digits and account, valid by `stdnum.iban` (format and mod 97);
- national ID: US SSN (with dashes), Spanish DNI and NIE, French NIR, Chinese resident ID,
  Brazilian CPF (dotted), Indian Aadhaar (in fours), each checked by its `stdnum` validator;
- postal address: patterns only (no validator exists): a house number then a capitalised street
  name and an English street word, a house number then a French street word, a German street
  word then a house number, a Spanish street word, name and number, a Chinese road and number;
  in a text that holds one of those, UK postcodes, five-digit postcodes with a place name and
  US "City, ST 12345" lines too.

Every finder but the email's and the IPv6 one works around the runs of digits that one scan of
the text finds, so a text costs about one regex pass plus a little per long number. Everything is
pure and offline (no model, no network); every pattern is bounded.
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
from stdnum.us import ssn

EMAIL: Final = "[EMAIL]"
PHONE: Final = "[PHONE]"
IP: Final = "[IP]"
CARD: Final = "[CARD]"
IBAN: Final = "[IBAN]"
NATIONAL_ID: Final = "[NATIONAL_ID]"
ADDRESS: Final = "[ADDRESS]"
# In the order they win where two finds overlap.
PLACEHOLDERS: Final = (EMAIL, IBAN, CARD, NATIONAL_ID, IP, PHONE, ADDRESS)

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


def _ibans(text: str, lo: int, hi: int) -> Iterator[Span]:
    for found in _IBAN.finditer(text, lo, hi):
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
    r"(?<![\d.,-])(?:\d{4}(?:[ -]?\d{4}){2}(?:[ -]?\d{1,4}){1,2}|\d{4}[ -]?\d{6}[ -]?\d{4,5})"
    r"(?![\d-]|[.,]\d)",
    re.ASCII,
)
# Issuer prefixes of the networks that use Luhn: Visa 4, Mastercard 51-55 and 2221-2720, Amex
# 34/37, Diners 30/36/38, Discover and UnionPay 6, JCB 35. Other first digits are not cards
# (a 13-digit millisecond timestamp starts with 1).
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[04-8]|6")


def _cards(text: str, lo: int, hi: int) -> Iterator[Span]:
    for found in _CARD.finditer(text, lo, hi):
        digits = found.group().replace(" ", "").replace("-", "")
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


def _ipv4s(text: str, lo: int, hi: int) -> Iterator[Span]:
    for found in _IPV4.finditer(text, lo, hi):
        if _public_address(found.group()):
            yield found.start(), found.end(), IP


def _ipv6s(text: str, lo: int, hi: int) -> Iterator[Span]:
    for found in _IPV6.finditer(text, lo, hi):
        candidate = found.group()
        # "dead::beef" is an address too, and a C++ scope; real ones carry digits.
        if any(c.isdigit() for c in candidate) and _public_address(candidate):
            yield found.start(), found.end(), IP


# ---------------------------------------------------------------- national identity numbers

# By the count of digits in the run: most runs of digits are of no identity number's length.
_ID_PATTERNS: Final[dict[int, tuple[tuple[str, Callable[[str], bool]], ...]]] = {
    7: ((r"(?<![\w-])[XYZxyz]-?\d{7}-?[A-Za-z](?![\w-])", nie.is_valid),),
    8: ((r"(?<![\w-])\d{8}-?[A-Za-z](?![\w-])", nif.is_valid),),
    9: ((r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])", ssn.is_valid),),
    11: ((r"(?<![\w.-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\w-])", cpf.is_valid),),
    12: ((r"(?<![\w-])[2-9]\d{3} \d{4} \d{4}(?![\w-])", aadhaar.is_valid),),
    13: ((r"(?<![\w-])[12] ?\d{2} ?\d{2} ?2[AB] ?\d{3} ?\d{3} ?\d{2}(?![\w-])", nir.is_valid),),
    15: ((r"(?<![\w-])[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}(?![\w-])", nir.is_valid),),
    17: ((r"(?<![\w-])\d{17}[Xx](?![\w-])", ric.is_valid),),
    18: ((r"(?<![\w-])\d{18}(?![\w-])", ric.is_valid),),
}
_IDS: Final = {
    digits: tuple((re.compile(pattern, re.ASCII), is_valid) for pattern, is_valid in patterns)
    for digits, patterns in _ID_PATTERNS.items()
}


def _national_ids(text: str, lo: int, hi: int, digits: int) -> Iterator[Span]:
    for pattern, is_valid in _IDS.get(digits, ()):
        for found in pattern.finditer(text, lo, hi):
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
# Where no "+" or "00" says the country, the number's shape says which regions to try: with a
# trunk "0", most of Europe and Asia; without one, the shapes below.
_TRUNK_ZERO_REGIONS: Final = (
    "FR", "DE", "GB", "IT", "NL", "BE", "CH", "AT", "SE", "CN", "JP", "KR", "IN", "AU", "BR"
)  # fmt: skip
_NO_TRUNK_SHAPES: Final = (
    (re.compile(r"1?[2-9]\d{9}"), "US"),  # North America: area code, exchange, line
    (re.compile(r"1[3-9]\d{9}"), "CN"),  # Chinese mobile
    (re.compile(r"[6-9]\d{8}"), "ES"),  # Spanish mobile and fixed
    (re.compile(r"3\d{9}"), "IT"),  # Italian mobile
)
# 1 234 567 or 919 581 651: groups of three after the first are how figures are written.
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:([ .,\u00a0])\d{3})(?:\1\d{3})+")
MIN_PHONE_DIGITS: Final = 7


def _valid_number(candidate: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


def _is_phone(candidate: str) -> bool:
    digits = _SEPARATORS.sub("", candidate).lstrip("+")
    if not MIN_PHONE_DIGITS <= len(digits) <= 17:
        return False
    if candidate.count(".") == 1 or _DATE.search(candidate):
        return False  # a decimal or a date
    if "." in candidate and any(len(g) > 4 for g in candidate.split(".")):
        return False  # a version or a dotted number, not 415.555.0132
    if candidate.startswith("+"):
        return _valid_number(candidate, None)
    if digits.startswith("00"):
        return _valid_number("+" + digits[2:], None)
    if digits.startswith("0"):
        return any(_valid_number(candidate, region) for region in _TRUNK_ZERO_REGIONS)
    if _THOUSANDS.fullmatch(candidate):
        return False
    return any(
        shape.fullmatch(digits) and _valid_number(candidate, region)
        for shape, region in _NO_TRUNK_SHAPES
    )


def _phones(text: str, lo: int, hi: int) -> Iterator[Span]:
    for found in _PHONE.finditer(text, lo, hi):
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
_STREET_WORDS: Final = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Way"
    "|Square|Sq|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Gardens"
)
# Each street pattern is tried only at a number: those with the number first are matched where
# the number starts, those with the street first are searched just before it.
_NUMBER_THEN_STREET = re.compile(
    # 221B Baker Street, 1600 Pennsylvania Avenue NW
    rf"(?<![0-9A-Za-z.,])\d{{1,5}}[A-Za-z]?,? (?:{_CAP} ){{1,4}}"
    rf"(?:{_STREET_WORDS})\b\.?"
    r"(?: (?:NW|NE|SW|SE|N|S|E|W)\b)?"
    # 12 rue de la Paix, 5 bis avenue Victor Hugo
    r"|(?<![0-9A-Za-z.,])\d{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|av\.|boulevard|bd|place"
    r"|allée|impasse|chemin|quai|cours|route)(?: (?:de la|de l'|des|du|de|d'|la|le|les))?"
    rf" ?(?:{_CAP})(?: (?:{_CAP}|de|du|des|la|le))" + r"{0,3}"
)
_GERMAN_STREET_ENDINGS: Final = "straße|strasse|str\\.|weg|platz|allee|gasse|damm|ufer|chaussee"
# Hauptstraße 5, Lindenweg 12a
_GERMAN_STREET = re.compile(
    rf"(?<![A-Za-zÄÖÜäöüß])[A-ZÄÖÜ][a-zäöüß-]{{2,30}}(?:{_GERMAN_STREET_ENDINGS})"
    r" \d{1,4}[a-z]?(?![\w-])"
)
# Calle Mayor 10, C/ Alcalá, 45, Avenida de la Paz nº 3
_SPANISH_STREET = re.compile(
    r"(?<![A-Za-z])(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Camino|Carrera)"
    rf" (?:(?:de la|del|de) )?{_CAP}(?: {_CAP}){{0,3}},?(?: nº| n\.º| no\.)?"
    r" \d{1,4}[a-z]?(?![\w-])"
)
# Without one of these words the Spanish pattern cannot match; they all start with a capital,
# which lets the regex engine skip the lowercase text between them.
_SPANISH_HINT = re.compile(r"(?:Ca(?:lle|mino|rrera)|C/|Av(?:enida|da\.)|P(?:laza|aseo)) ")
# 北京市朝阳区建国路88号
_CHINESE_ADDRESS = re.compile(
    r"[\u4e00-\u9fff]{2,12}(?:路|街|道|巷|弄|胡同)\d{1,5}(?:号|號)(?:\d{1,4}(?:室|楼|栋))?"
)
# Looked for only in a text that already holds a street address: a postcode alone is left.
_ADDRESS_LINES: Final = (
    # SW1A 1AA, EC1A 1BB
    re.compile(r"(?<![A-Za-z0-9])(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[ABD-HJLNP-UW-Z]{2}(?!\w)"),
    # 75011 Paris, 10115 Berlin, 28013 Madrid
    re.compile(r"(?<![0-9A-Za-z.,-])\d{5} [A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'-]{2,30}(?:[ -][A-Z][a-zà-ÿ-]+)?"),
    # Springfield, IL 62704
    re.compile(rf"(?<!\w){_CAP}(?: {_CAP})?, [A-Z]{{2}} \d{{5}}(?:-\d{{4}})?(?!\w)"),
)


_FRENCH_STREETS: Final = (
    "rue|avenue|av\\.|boulevard|bd|place|allée|impasse|chemin|quai|cours|route|bis|ter"
)


def _spanish_streets(text: str) -> Iterator[Span]:
    if _SPANISH_HINT.search(text) is not None:
        for found in _SPANISH_STREET.finditer(text):
            yield found.start(), found.end(), ADDRESS


def _address_at(text: str, start: int, end: int) -> Span | None:
    """A street address starting at the number text[start:end], or ending with it (German
    streets, Chinese addresses)."""
    if text.startswith(("号", "號"), end):
        found = _CHINESE_ADDRESS.search(text, max(0, start - 20), min(len(text), end + 8))
    else:
        found = _NUMBER_THEN_STREET.match(text, start)
        if found is None and text[start - 1 : start] == " ":
            found = _GERMAN_STREET.search(text, max(0, start - 45), min(len(text), end + 2))
    return None if found is None else (found.start(), found.end(), ADDRESS)


# ---------------------------------------------------------------- all together

# Every kind but emails and IPv6 addresses holds a number. One scan finds the runs of digits and
# separators long enough to be any of them, and the house numbers followed by a capitalised word,
# a French street word or 号; each finder then looks only around those.
_RUN_SEPARATORS: Final = " .()+/:-"
# (The shared first digit lets the regex engine skip to digits without trying each branch.)
_NUMBER = re.compile(
    r"[0-9](?:(?P<long>[0-9 .()+/:\-]{5,}[0-9])"
    r"|[0-9]{0,4}(?=[A-Za-z]?,? (?:[A-ZÀ-ÖØ-Þ]|(?i:" + _FRENCH_STREETS + r") )|号|號)"
    # a number after a German street word (the last three letters of each, then a space)
    r"|(?<=(?:aße|sse|tr\.|weg|atz|lee|amm|fer|see) [0-9])[0-9]{0,3})"
)
# Dates, times, decimals and short versions: the commonest long runs, none of them personal.
_PLAIN_FIGURE = re.compile(
    r"\d{4}-\d\d-\d\d|\d\d?([./-])\d\d?\1\d{4}|\d+\.\d+|\d{1,2}(?:\.\d{1,2}){1,2}"
    r"|\d\d?:\d\d(?::\d\d)?"
)
# 1 234 567: a figure, unless a "+" before it makes it an international phone number.
_SPACED_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:([ \u00a0])\d{3})(?:\1\d{3})+")
_MARGIN: Final = 16
# Every country's account part holds at least this many digits in a row around its groups.
_IBAN_MIN_DIGITS: Final = 10


_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_IPV6_REACH: Final = 45


def _ipv6_windows(text: str) -> Iterator[tuple[int, int]]:
    """Windows around the colons that sit between hex digits (or open a "::"), once each."""
    covered = 0
    at = text.find(":")
    while at != -1:
        if at >= covered and (
            text[at - 1 : at] in _HEX_DIGITS or text[at + 1 : at + 2] in _HEX_DIGITS
        ):
            lo, covered = max(0, at - _IPV6_REACH), min(len(text), at + _IPV6_REACH)
            yield lo, covered
        at = text.find(":", at + 1)


def _around_numbers(text: str) -> Iterator[Span]:
    for run in _NUMBER.finditer(text):
        start, end = run.span()
        if run.group("long") is None:
            address = _address_at(text, start, end)
            if address is not None:
                yield address
            continue
        # A sentence's full stop or a closing bracket may end the run; they count for nothing.
        number = run.group().rstrip(" .)/:-")
        if _PLAIN_FIGURE.fullmatch(number) or (
            _SPACED_THOUSANDS.fullmatch(number) and text[start - 1 : start] != "+"
        ):
            continue
        digits = len(number) - sum(number.count(c) for c in _RUN_SEPARATORS)
        dots = number.count(".")
        lo, hi = max(0, start - _MARGIN), min(len(text), end + _MARGIN)
        if digits >= _IBAN_MIN_DIGITS:
            # Letters may follow the digits for as long again (FR, IT, ... accounts).
            iban_hi = min(len(text), end + 2 * _MARGIN)
            yield from (
                s for s in _ibans(text, lo, iban_hi) if s[1] < iban_hi or iban_hi == len(text)
            )
        found: list[Span] = []
        if 13 <= digits <= 19:
            found.extend(_cards(text, lo, hi))
        found.extend(_national_ids(text, lo, hi, digits))
        if dots >= 3:
            found.extend(_ipv4s(text, lo, hi))
        # One dot is a decimal point; phone numbers have none or several.
        if digits >= MIN_PHONE_DIGITS and dots != 1 and not _DATE.search(number):
            found.extend(_phones(text, lo, hi))
        # A find that reaches the end of a window cut short may be the head of the next
        # number: that one's own window finds it whole.
        yield from (span for span in found if span[1] < hi or hi == len(text))
    yield from _spanish_streets(text)


def find_personal_data(text: str) -> list[Span]:
    """The spans (start, end, placeholder) of personal data in `text`, in text order.

    Where two finds overlap the kind first in PLACEHOLDERS wins: an email's digits are no phone.
    """
    found: list[Span] = []
    if "@" in text:
        found.extend(_emails(text))
    found.extend(_around_numbers(text))
    if ":" in text:
        for lo, hi in _ipv6_windows(text):
            found.extend(_ipv6s(text, lo, hi))
    if not found:
        return []
    if any(kind == ADDRESS for _, _, kind in found):
        for pattern in _ADDRESS_LINES:
            found.extend((m.start(), m.end(), ADDRESS) for m in pattern.finditer(text))
    claimed: list[Span] = []
    rank = {kind: n for n, kind in enumerate(PLACEHOLDERS)}
    for span in sorted(found, key=lambda s: (rank[s[2]], s[0])):
        start, end, _ = span
        if all(end <= s or start >= e for s, e, _ in claimed):
            claimed.append(span)
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
