"""A seeded corpus for the redactor: personal data planted in sentences of several languages and
formats, and clean sentences full of numbers that must come out unchanged.

Planted values are made the way people write them (phone numbers in each country's national and
international layouts, cards grouped or not, IBANs in fours or run together), with valid check
digits where the real thing has them; the sentences around them are English, French, German,
Spanish, Italian, Chinese and Japanese.
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from stdnum import iban, luhn, verhoeff
from stdnum.es import dni


@dataclass(frozen=True)
class Planted:
    """A sentence holding one piece of personal data: `value`, of kind `placeholder`."""

    sentence: str
    value: str
    placeholder: str


SENTENCES: dict[str, tuple[str, ...]] = {
    "[EMAIL]": (
        "Please send the draft to {} before Friday.",
        "Mon adresse est {}, écris-moi quand tu veux.",
        "Schreib mir an {} – ich antworte meistens abends.",
        "Mi correo es {} por si necesitas algo.",
        "Scrivimi a {} per i dettagli.",
        "我的邮箱是{}，有问题请联系。",
        "連絡先は{}です。",
        "Contact: <{}>",
        "mailto:{}",
    ),
    "[PHONE]": (
        "You can reach me at {} after six.",
        "Vous pouvez me joindre au {} après 18h.",
        "Sie erreichen mich unter {} ab 9 Uhr.",
        "Mi número es {}, llámame mañana.",
        "Il mio numero è {}.",
        "我的电话号码是{}，请明天打给我。",
        "電話番号は{}です。",
        "Tel: {}",
        "call me ({}) tomorrow",
    ),
    "[IP]": (
        "My server at {} keeps refusing SSH connections.",
        "Le routeur a l'adresse {} depuis hier.",
        "Warum ist {} in meinem Log gesperrt?",
        "La IP {} aparece en los registros del firewall.",
        "服务器地址是{}，为什么连不上？",
        "curl -v http://{}/status",
        "Blocked {}; too many attempts.",
    ),
    "[CARD]": (
        "My card number is {}, expiry 04/27.",
        "Ma carte bancaire {} a été refusée.",
        "Die Kreditkarte {} wurde doppelt belastet.",
        "Pagué con la tarjeta {} y no llegó el pedido.",
        "我的信用卡号是{}，被扣了两次款。",
        "card={}",
    ),
    "[IBAN]": (
        "Please transfer the deposit to {} by Monday.",
        "Mon IBAN est {}, merci pour le virement.",
        "Bitte überweise die Miete auf {} bis zum Dritten.",
        "Mi cuenta es {}, a nombre de Lucía.",
        "Il mio IBAN: {}",
        "收款账户 IBAN：{}",
    ),
    "[NATIONAL_ID]": (
        "My ID number is {} if the form needs it.",
        "Mon numéro d'identité est {}.",
        "Meine Ausweisnummer lautet {}.",
        "Mi DNI es {} y caduca en 2030.",
        "身份证号码{}，请帮我填表。",
    ),
    "[ADDRESS]": (
        "Ship it to {}, please.",
        "J'habite au {} depuis trois ans.",
        "Meine Adresse ist {}.",
        "Vivo en {} desde 2019.",
        "我住在{}。",
    ),
}

# ---------------------------------------------------------------- values


def _email(rng: random.Random) -> str:
    first = rng.choice(["jean", "anna", "li.wei", "m.garcia", "o'brien", "sam", "Kim", "ZOE"])
    last = rng.choice(["dupont", "schmidt", "zhang", "lopez", "rossi", "smith", "tanaka"])
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{rng.randint(1, 9999)}",
            f"{first}+{rng.choice(['arena', 'news', 'tag-2'])}",
            f"{last}_{first}",
            f"{first}-{last}.{rng.randint(70, 99)}",
        ]
    )
    domain = rng.choice(
        [
            "gmail.com",
            "mail.example.co.uk",
            "eng.cs.uni-heidelberg.de",
            "free.fr",
            "correo.es",
            "qq.com",
            "lab.example.io",
            "sub.dept.example.museum",
            "EXAMPLE.ORG",
        ]
    )
    return f"{local}@{domain}"


# Regions whose numbers the redactor reads without a country code, and the international form
# for any region.
NATIONAL_REGIONS = ("US", "GB", "FR", "DE", "ES", "IT", "NL", "CN", "JP", "IN", "AU")
INTERNATIONAL_REGIONS = (*NATIONAL_REGIONS, "BE", "CH", "AT", "SE", "PL", "PT", "BR", "MX", "KR")


def _phone_number(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kind = rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(
        region
    )
    if example is None:
        raise ValueError(f"no example number for {region}")
    national = phonenumbers.national_significant_number(example)
    for _ in range(1000):
        # Keep the leading digits (area code or mobile prefix), draw the subscriber's.
        keep = max(2, len(national) - 5)
        digits = national[:keep] + "".join(
            rng.choice(string.digits) for _ in range(len(national) - keep)
        )
        number = phonenumbers.parse("+" + str(example.country_code) + digits, None)
        if phonenumbers.is_valid_number(number):
            return number
    raise ValueError(f"no valid number drawn for {region}")


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.5:
        number = _phone_number(rng, rng.choice(NATIONAL_REGIONS))
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        layout = rng.random()
        if layout < 0.6:
            return national
        if layout < 0.8:
            # As typed in a hurry: the national digits run together.
            return "".join(c for c in national if c.isdigit())
        # Dots or dashes instead of spaces (06.12.34.56.78, 415-555-0132); dots only where
        # there are three groups or more, as nobody writes 020.79460958.
        plain = national.replace("(", "").replace(")", "")
        return plain.replace(" ", "." if plain.count(" ") >= 2 and rng.random() < 0.5 else "-")
    number = _phone_number(rng, rng.choice(INTERNATIONAL_REGIONS))
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    layout = rng.random()
    if layout < 0.5:
        return international
    if layout < 0.7:
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if layout < 0.85:
        return "00" + international[1:]  # 0049 30 1234567
    return international.replace(" ", "-")


def _ip(rng: random.Random) -> str:
    while True:
        if rng.random() < 0.6:
            v4 = ipaddress.IPv4Address(rng.getrandbits(32))
            if v4.is_loopback or v4.is_unspecified:
                continue
            text = str(v4)
            return rng.choice([text, text, f"{text}:{rng.randint(1, 65535)}"])
        v6 = ipaddress.IPv6Address((0x2000 << 112) | rng.getrandbits(112))
        form = rng.random()
        if form < 0.4:
            return v6.compressed
        if form < 0.6:
            return v6.exploded
        if form < 0.8:
            # A network's address with a run of zero groups, written with "::".
            short = ipaddress.IPv6Address((int(v6) >> 64 << 64) | rng.randint(1, 0xFFFF))
            return short.compressed
        return f"fe80::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}%eth0"


CARD_PREFIXES = (
    ("4", 16),
    ("4", 13),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3528", 16),
    ("62", 19),
    ("36", 14),
)


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice(CARD_PREFIXES)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = body + luhn.calc_check_digit(body)
    layout = rng.random()
    if layout < 0.3:
        return digits
    separator = " " if layout < 0.7 else "-"
    if length == 15:
        return separator.join((digits[:4], digits[4:10], digits[10:]))
    return separator.join(digits[i : i + 4] for i in range(0, length, 4))


IBAN_LAYOUTS = {
    # country: BBAN as (count, alphabet) parts, after the ECBS registry
    "DE": ((18, string.digits),),
    "FR": ((10, string.digits), (11, string.digits + string.ascii_uppercase), (2, string.digits)),
    "GB": ((4, string.ascii_uppercase), (14, string.digits)),
    "ES": ((20, string.digits),),
    "IT": ((1, string.ascii_uppercase), (10, string.digits), (12, string.digits)),
    "NL": ((4, string.ascii_uppercase), (10, string.digits)),
    "BE": ((12, string.digits),),
    "CH": ((5, string.digits), (12, string.digits)),
    "AT": ((16, string.digits),),
    "PL": ((24, string.digits),),
    "SE": ((20, string.digits),),
    "NO": ((11, string.digits),),
}


def _iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_LAYOUTS))
    for _ in range(100_000):
        bban = "".join(
            "".join(rng.choice(alphabet) for _ in range(count))
            for count, alphabet in IBAN_LAYOUTS[country]
        )
        number = country + iban.calc_check_digits(country + "00" + bban) + bban
        # Some countries add a national check digit that a random account rarely has.
        if iban.is_valid(number):
            break
    else:
        raise ValueError(f"no valid IBAN drawn for {country}")
    if rng.random() < 0.7:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def _cpf_check_digits(body: str) -> str:
    """The two CPF check digits (Receita Federal's rule: weighted sums modulo 11)."""
    numbers = [int(c) for c in body]
    first = sum((10 - i) * n for i, n in enumerate(numbers)) * 10 % 11 % 10
    second = sum((11 - i) * n for i, n in enumerate([*numbers, first])) * 10 % 11 % 10
    return f"{first}{second}"


def _national_id(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:  # US social security number
        area = rng.choice([n for n in range(1, 900) if n != 666])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == 1:  # Spanish DNI
        body = f"{rng.randint(0, 99_999_999):08d}"
        return body + dni.calc_check_digit(body)
    if kind == 2:  # Brazilian CPF
        body = f"{rng.randint(1, 999_999_998):09d}"
        digits = body + _cpf_check_digits(body)
        return f"{digits[:3]}.{digits[3:6]}.{digits[6:9]}-{digits[9:]}"
    if kind == 3:  # Spanish NIE: X, Y or Z (read as 0, 1, 2), seven digits, a letter
        first = rng.choice("XYZ")
        body = f"{rng.randint(0, 9_999_999):07d}"
        return (
            first
            + body
            + dni.calc_check_digit(
                "XYZ".index(first) and str("XYZ".index(first)) + body or "0" + body
            )
        )
    # Indian Aadhaar: 12 digits, Verhoeff check, written in fours
    body = str(rng.randint(2, 9)) + "".join(rng.choice(string.digits) for _ in range(10))
    digits = body + verhoeff.calc_check_digit(body)
    return f"{digits[:4]} {digits[4:8]} {digits[8:]}"


def _address(rng: random.Random) -> str:
    number = rng.randint(1, 2400)
    kind = rng.randrange(6)
    if kind == 0:
        street = rng.choice(["Baker", "Maple", "Pennsylvania", "Elm", "Sunset", "Old Mill"])
        suffix = rng.choice(["Street", "Avenue", "Road", "Blvd", "Lane", "Drive", "St."])
        zip_code = f"{rng.randint(10000, 99999)}"
        city = rng.choice(["Springfield, IL", "Austin, TX", "Portland, OR", "Boston, MA"])
        return rng.choice(
            [f"{number} {street} {suffix}", f"{number} {street} {suffix}, {city} {zip_code}"]
        )
    if kind == 1:
        street = rng.choice(["rue de la Paix", "avenue Victor Hugo", "boulevard Saint-Michel"])
        city = rng.choice(["75002 Paris", "69003 Lyon", "13001 Marseille"])
        return rng.choice([f"{number % 200} {street}", f"{number % 200} {street}, {city}"])
    if kind == 2:
        street = rng.choice(["Hauptstraße", "Goethestraße", "Lindenweg", "Marktplatz"])
        city = rng.choice(["10115 Berlin", "80331 München", "50667 Köln"])
        return rng.choice([f"{street} {number % 150}", f"{street} {number % 150}, {city}"])
    if kind == 3:
        street = rng.choice(["Calle Mayor", "Avenida de la Constitución", "Plaza Real"])
        return f"{street} {number % 150}, {rng.choice(['28013 Madrid', '08002 Barcelona'])}"
    if kind == 4:
        postcode = rng.choice(["SW1A 1AA", "EC1A 1BB", "W1A 0AX", "M1 1AE", "B33 8TH"])
        return f"{number % 300} {rng.choice(['Downing', 'Oxford', 'King'])} Street, {postcode}"
    district = rng.choice(["北京市朝阳区", "上海市浦东新区", "广州市天河区"])
    road = rng.choice(["建国路", "世纪大道", "天河路"])
    return f"{district}{road}{number % 500}号"


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "[EMAIL]": _email,
    "[PHONE]": _phone,
    "[IP]": _ip,
    "[CARD]": _card,
    "[IBAN]": _iban,
    "[NATIONAL_ID]": _national_id,
    "[ADDRESS]": _address,
}


def planted(placeholder: str, n: int, *, seed: int = 21) -> list[Planted]:
    rng = random.Random(f"{seed}-{placeholder}")
    made = []
    for _ in range(n):
        value = MAKERS[placeholder](rng)
        made.append(Planted(rng.choice(SENTENCES[placeholder]).format(value), value, placeholder))
    return made


# ---------------------------------------------------------------- clean sentences


def _clean_fillers(rng: random.Random) -> dict[str, str]:
    year = rng.randint(1900, 2030)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    big = rng.randint(10_000, 9_999_999_999)
    return {
        "year": str(year),
        "iso": f"{year}-{month:02d}-{day:02d}",
        "eu_date": f"{day:02d}/{month:02d}/{year}",
        "de_date": f"{day:02d}.{month:02d}.{year}",
        "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        "stamp": f"{year}-{month:02d}-{day:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        f":{rng.randint(0, 59):02d}Z",
        "version": f"{rng.randint(0, 20)}.{rng.randint(0, 40)}.{rng.randint(0, 99)}",
        "price": f"{rng.randint(1, 99_999):,}.{rng.randint(0, 99):02d}",
        "eu_price": f"{rng.randint(1, 9999)},{rng.randint(0, 99):02d}",
        "big": f"{big:,}",
        "fr_big": f"{big:,}".replace(",", " "),
        "pct": f"{rng.uniform(0, 100):.1f}",
        "float": f"{rng.uniform(-1000, 1000):.6f}",
        "pi": "3.14159265358979",
        "small": str(rng.randint(0, 999)),
        "count": str(rng.randint(1000, 99_999)),
        "port": str(rng.randint(1024, 65535)),
        "hex": f"{rng.getrandbits(32):08x}",
        "sha": f"{rng.getrandbits(160):040x}"[:7],
        "uuid": f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
        f"a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
        "lat": f"{rng.uniform(-90, 90):.4f}",
        "lon": f"{rng.uniform(-180, 180):.4f}",
        "power": str(2 ** rng.randint(10, 40)),
        "ms": str(rng.randint(1_600_000_000_000, 1_800_000_000_000)),
        "unix": str(rng.randint(1_000_000_000, 1_999_999_999)),
        "isbn": f"978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-"
        f"{rng.randint(0, 9)}",
        "range": f"{rng.randint(1, 50)}-{rng.randint(51, 100)}",
        "score": f"{rng.randint(0, 7)}-{rng.randint(0, 7)}",
        "dims": f"{rng.randint(100, 4000)}x{rng.randint(100, 4000)}",
    }


CLEAN_TEMPLATES: tuple[str, ...] = (
    "The treaty was signed in {year} and revised on {iso}.",
    "Our meeting moved to {eu_date} at {time}, room {small}.",
    "Der Termin ist am {de_date} um {time} Uhr.",
    "La réunion aura lieu le {eu_date} à {time}.",
    "Upgrade to version {version} before {iso}; {version} has a memory leak.",
    "Python {version} broke my build: `pip install numpy=={version}` fails.",
    "The laptop costs ${price} and the monitor ${price}.",
    "Le billet coûte {eu_price} € et la chambre {eu_price} €.",
    "The city has {big} inhabitants and grew {pct}% last year.",
    "La ville compte {fr_big} habitants.",
    "Die Stadt hat {big} Einwohner.",
    "Compute {small} * {small} + {count} and explain each step.",
    "What is 2^{small} mod {count}? I got {big}.",
    "pi is about {pi}, and e about 2.718281828459045.",
    "The loss went from {float} to {float} after {count} steps.",
    "Set `PORT={port}` and run `uvicorn app:app --port {port}`.",
    "Listen on 127.0.0.1:{port} or 0.0.0.0:{port} inside the container.",
    "git checkout {sha} && git cherry-pick {sha}",
    "The colour #{hex} looks off; try 0x{hex} in the shader.",
    "Request {uuid} failed at {stamp}.",
    "The coordinates are {lat}, {lon}.",
    "A 32-bit integer holds {power} values; my array has {count} elements.",
    "The log line says ts={ms} and epoch={unix}.",
    "ISBN {isbn} is the second edition.",
    "Use between {range} grams of flour; the score was {score}.",
    "Resize the image to {dims} pixels and save it as PNG.",
    "for i in range({count}):\n    total += i * {small}",
    "SELECT * FROM orders WHERE id = {count} AND created_at > '{iso}';",
    "x = np.zeros(({small}, {small})); y = x @ x.T; print(y.shape)",
    "@app.get('/items/{{item_id}}') returns item {small} of {count}.",
    "std::vector<int> v({small}); v.reserve({count});",
    "Follow RFC 5322 and ISO 8601; the file is UTF-8, the song 320 kbps.",
    "La population de l'Espagne était de {big} en {year}.",
    "El precio subió un {pct}% hasta {eu_price} € el {eu_date}.",
    "Il treno parte alle {time} dal binario {small}.",
    "2024年{small}月的销量是{count}件，比去年增长{pct}%。",
    "バージョン{version}では{count}件のバグが修正されました。",
    "The flight {small} departs at {time} from gate {small}, seat {small}C.",
    "Chapter {small}, verse {small}: read pages {range}.",
    "The invoice total is {price} USD for {count} units shipped on {iso}.",
)


def clean_sentences(n: int, *, seed: int = 21) -> list[str]:
    rng = random.Random(f"{seed}-clean")
    return [rng.choice(CLEAN_TEMPLATES).format(**_clean_fillers(rng)) for _ in range(n)]
