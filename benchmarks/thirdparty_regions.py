"""The classifier per region, on people and sentences it was not written beside, in the log
formats real services write: the 3,000 people of FakeNameGenerator.com that Microsoft's
``presidio-evaluator`` ships (30 countries; each with a phone number as that country writes
it, an e-mail, for some a national id), put into presidio-evaluator's sentence templates,
and written as each format's published shape.

Nothing here imports perisai's detectors to make the data. Truth comes from the person's
record, checked by libraries: a phone number counts when phonenumbers calls it valid for the
person's country; a national id when python-stdnum's module for that country (``us.ssn``,
``dk.cpr``, ``se.personnummer``, ``pl.pesel``, ``br.cpf``, ``ca.sin``, ``fi.hetu``,
``fr.nir``) accepts it; a place (for ``GEO_COORDINATE``) is Faker's ``local_latlng`` for the
country, a real town's coordinates. Values that fail their check are left out either way.
The classifier is given the person's country as its region (``--region PT``), as a service
in that country would be configured.

Formats, each from its published shape (one record may be several lines):
- logback / log4j2 ``PatternLayout`` (``%d [%thread] %-5level %logger{36} - %msg%n``);
- Spring Boot's default console line;
- Apache combined (``%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"``) with the
  e-mail as the authenticated user, a form query (``+`` for blanks, as browsers send it) and
  an API request with the user's place;
- Twilio's SMS status callback (form body: MessageSid, MessageStatus, To, From, ...);
- Vonage's delivery receipt (GET query: msisdn, to, network-code, messageId, status, ...);
- Telegram Desktop's JSON export (``result.json``, pretty-printed, a location message too);
- Telegram Desktop's HTML export (``<div class="from_name">``, ``<div class="text">``);
- CSV with a header (id, name, phone, email, note).

Run: ``.venv-bench/bin/python benchmarks/thirdparty_regions.py [--write]`` (``make
bench-classify`` installs presidio-evaluator into ``.venv-bench``); ``--write`` also writes
the full entity x format x region table to ``docs/benchmarks-regions.md``.
"""

from __future__ import annotations

import argparse
import csv
import html
import importlib
import io
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_plus

import phonenumbers
from faker import Faker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.thirdparty import TEMPLATES  # noqa: E402

PEOPLE = TEMPLATES.parent / "FakeNameGenerator.com_3000.csv" if TEMPLATES else None
SEED = 2024
ID_CHECKS = {
    "US": "us.ssn",
    "DK": "dk.cpr",
    "SE": "se.personnummer",
    "PL": "pl.pesel",
    "BR": "br.cpf",
    "CA": "ca.sin",
    "FI": "fi.hetu",
    "FR": "fr.nir",
}
ENTITIES = ("PHONE", "EMAIL", "NATIONAL_ID", "GEO_COORDINATE", "MESSAGE_BODY", "PERSON")
_SLOT = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Person:
    region: str
    name: str
    email: str
    phone: str  # as written in the record: the country's national form
    national_id: str
    place: tuple[str, str]  # latitude, longitude


@dataclass(frozen=True)
class Record:
    person: Person
    sentence: str
    phone_form: str  # the phone as the sentence writes it
    values: tuple[tuple[str, str], ...]  # (entity, value) counted
    ignored: tuple[str, ...]  # values written but not counted (they fail their check)


def people(path: Path) -> list[Person]:
    fake = Faker()
    fake.seed_instance(SEED)
    out = []
    with path.open(encoding="utf-8-sig", newline="") as rows:
        for row in csv.DictReader(rows):
            place = fake.local_latlng(row["Country"]) or ("", "")
            out.append(
                Person(
                    row["Country"],
                    f"{row['GivenName']} {row['Surname']}",
                    row["EmailAddress"],
                    row["TelephoneNumber"],
                    row["NationalID"],
                    (place[0], place[1]),
                )
            )
    return out


def _parsed(person: Person) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(person.phone, person.region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _id_valid(person: Person) -> bool:
    module = ID_CHECKS.get(person.region)
    if not module or not person.national_id:
        return False
    return bool(importlib.import_module(f"stdnum.{module}").is_valid(person.national_id))


def records(templates: Path, persons: list[Person]) -> list[Record]:
    lines = templates.read_text(encoding="utf-8", errors="replace").splitlines()
    with_phone = [t.strip() for t in lines if "{{phone_number}}" in t]
    with_id = [t.strip() for t in lines if "{{ssn}}" in t]
    rng = random.Random(SEED)
    fake = Faker()
    fake.seed_instance(SEED)
    out = []
    for n, person in enumerate(persons):
        number = _parsed(person)
        forms = [person.phone]
        if number is not None:  # the forms phonenumbers writes, beside the record's own
            forms += [
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            ]
        form = forms[n % len(forms)]
        template = rng.choice(with_id if person.national_id and n % 3 == 0 else with_phone)
        fill = {
            "phone_number": form,
            "ssn": person.national_id,
            "email": person.email,
            "person": person.name,
            "name": person.name,
            "first_name": person.name.split()[0],
            "last_name": person.name.split()[-1],
        }

        def slot(match: re.Match[str], fill: dict[str, str] = fill) -> str:
            name = match[1]
            if name in fill:
                return fill[name]
            return str(getattr(fake, name)()) if hasattr(fake, name) else fake.word()

        sentence = _SLOT.sub(slot, template)
        values: list[tuple[str, str]] = [("EMAIL", person.email)]
        ignored: list[str] = []
        if number is not None:
            values.append(("PHONE", person.phone))
        else:
            ignored.append(person.phone)
        if _id_valid(person):
            values.append(("NATIONAL_ID", person.national_id))
        elif person.national_id:
            ignored.append(person.national_id)
        if person.place[0]:
            values += [("GEO_COORDINATE", person.place[0]), ("GEO_COORDINATE", person.place[1])]
        out.append(Record(person, sentence, form, tuple(values), tuple(ignored)))
    return out


def _e164(person: Person) -> str:
    number = _parsed(person)
    if number is None:
        return "+" + re.sub(r"\D", "", person.phone)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _stamp(n: int) -> str:
    return f"08:{n // 60 % 60:02d}:{n % 60:02d}"


# --- formats: a record as the lines a format writes ------------------------------------

Format = Callable[[Record, int], list[str]]


def logback(r: Record, n: int) -> list[str]:
    return [
        f"2024-05-02 {_stamp(n)}.{n % 1000:03d} [http-nio-8080-exec-{n % 10}] INFO  "
        f"c.e.support.TicketController - {r.sentence}"
    ]


def spring_boot(r: Record, n: int) -> list[str]:
    return [
        f"2024-05-02T{_stamp(n)}.{n % 1000:03d}Z  INFO 4123 --- [nio-8080-exec-{n % 10}] "
        f"c.e.support.TicketController             : {r.sentence}"
    ]


def apache(r: Record, n: int) -> list[str]:
    p = r.person
    head = f"198.51.100.{n % 250} - {p.email} [02/May/2024:{_stamp(n)} +0000]"
    tail = '200 2326 "-" "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"'
    lines = [f'{head} "GET /help/search?q={quote_plus(r.sentence)} HTTP/1.1" {tail}']
    if p.place[0]:
        lines.append(
            f'{head} "GET /api/v2/stores/nearby?lat={p.place[0]}&lng={p.place[1]}&radius=5 '
            f'HTTP/1.1" {tail}'
        )
    return lines


def twilio(r: Record, n: int) -> list[str]:
    sid = f"{n:032x}"
    body = (
        f"MessageSid=SM{sid}&SmsSid=SM{sid}&SmsStatus=delivered&MessageStatus=delivered"
        f"&To={quote(_e164(r.person))}&MessagingServiceSid=MG{sid}&AccountSid=AC{sid}"
        "&From=AcmeBank&ApiVersion=2010-04-01"
    )
    return [f"2024-05-02T{_stamp(n)}Z POST /sms/status-callback form={body}"]


def vonage(r: Record, n: int) -> list[str]:
    msisdn = _e164(r.person).lstrip("+")
    return [
        f'127.0.0.1 - - [02/May/2024:{_stamp(n)} +0000] "GET /webhooks/delivery-receipt?'
        f"msisdn={msisdn}&to=AcmeBank&network-code=23410&messageId=0A00000{n:09X}"
        f"&price=0.03330000&status=delivered&scts=2405020811&err-code=0&api-key=a1b2c3d4"
        f'&message-timestamp=2024-05-02+{quote(_stamp(n))} HTTP/1.1" 200 0 "-" "Vonage"'
    ]


def telegram_json(r: Record, n: int) -> list[str]:
    p = r.person
    message = {
        "id": n,
        "type": "message",
        "date": f"2024-05-02T{_stamp(n)}",
        "date_unixtime": str(1714637500 + n),
        "from": p.name,
        "from_id": f"user{5000000 + n}",
        "text": r.sentence,
        "text_entities": [{"type": "plain", "text": r.sentence}],
    }
    lines = json.dumps(message, indent=1, ensure_ascii=False).splitlines()
    if p.place[0]:
        location = {
            "id": n + 1_000_000,
            "type": "message",
            "date": f"2024-05-02T{_stamp(n)}",
            "from": p.name,
            "from_id": f"user{5000000 + n}",
            "location_information": {
                "latitude": float(p.place[0]),
                "longitude": float(p.place[1]),
            },
            "text": "",
            "text_entities": [],
        }
        lines += json.dumps(location, indent=1, ensure_ascii=False).splitlines()
    return [f"  {line}" for line in lines]


def telegram_html(r: Record, n: int) -> list[str]:
    """As Telegram Desktop writes messages.html: each value on its own line, between the
    lines that open and close its div."""
    return [
        f'     <div class="message default clearfix" id="message{n}">',
        '      <div class="body">',
        f'       <div class="pull_right date details" title="02.05.2024 {_stamp(n)}">',
        _stamp(n)[:5],
        "       </div>",
        '       <div class="from_name">',
        f"{html.escape(r.person.name)} ",
        "       </div>",
        '       <div class="text">',
        html.escape(r.sentence).replace("\n", "<br>"),
        "       </div>",
        "      </div>",
        "     </div>",
    ]


def csv_with_header(r: Record, n: int) -> list[str]:
    out = io.StringIO()
    p = r.person
    csv.writer(out).writerow([n, p.name, p.phone, p.email, r.sentence])
    return [out.getvalue().rstrip("\r\n")]


FORMATS: dict[str, Format] = {
    "logback / log4j2 pattern": logback,
    "Spring Boot console": spring_boot,
    "Apache combined": apache,
    "Twilio status callback": twilio,
    "Vonage delivery receipt": vonage,
    "Telegram JSON export": telegram_json,
    "Telegram HTML export": telegram_html,
    "CSV with header": csv_with_header,
}
CSV_HEADER = "id,name,phone,email,note"
# Where each value is written in each format (not every format writes every value).
WRITES = {
    "logback / log4j2 pattern": {"sentence"},
    "Spring Boot console": {"sentence"},
    "Apache combined": {"sentence", "EMAIL", "GEO_COORDINATE"},
    "Twilio status callback": {"PHONE"},
    "Vonage delivery receipt": {"PHONE"},
    "Telegram JSON export": {"sentence", "GEO_COORDINATE"},
    "Telegram HTML export": {"sentence"},
    "CSV with header": {"sentence", "PHONE", "EMAIL"},
}


# Where a record's sentence is a message someone wrote and its sender's name stands beside it
CHATS = {"Telegram JSON export", "Telegram HTML export", "CSV with header"}


def _in_sentence(r: Record, entity: str, value: str) -> bool:
    if entity == "PHONE":
        return r.phone_form in r.sentence
    return entity != "GEO_COORDINATE" and value in r.sentence  # no slot writes a place


def _counted(r: Record, fmt: str) -> set[tuple[str, str]]:
    writes = WRITES[fmt]
    out = set()
    for entity, value in r.values:
        if entity in writes or ("sentence" in writes and _in_sentence(r, entity, value)):
            out.add((entity, _normal(entity, value)))
    return out


def _normal(entity: str, text: str) -> str:
    if entity == "EMAIL":
        return text.lower().replace("%40", "@")
    if entity == "GEO_COORDINATE":
        return f"{float(text):.5f}"
    return re.sub(r"\D", "", text)


def _phone_key(text: str, region: str) -> str:
    """A phone match as its national significant number, so any written form compares."""
    text = unquote_plus(text) if "%" in text or "+" in text[1:] else text  # from a query
    if text.isdigit() and text[0] != "0":  # country-code digits (an msisdn)
        text = "+" + text
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return re.sub(r"\D", "", text)
    return phonenumbers.national_significant_number(number)


def score(
    recs: list[Record], fmt: str, found: list[list[tuple[str, str]]]
) -> dict[tuple[str, str], Counter[str]]:
    """(region, entity) -> tp, fn, fp for one format."""
    out: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r, matches in zip(recs, found, strict=True):
        region = r.person.region
        wanted = {
            (e, _phone_key(r.person.phone, region) if e == "PHONE" else v)
            for e, v in _counted(r, fmt)
        }
        ignored = {_normal("PHONE", v) for v in r.ignored}
        seen = set()
        if fmt in CHATS:
            wanted |= {("MESSAGE_BODY", "sentence"), ("PERSON", r.person.name)}
        for entity, text in matches:
            if entity not in ENTITIES:
                continue
            if entity == "MESSAGE_BODY":  # the message, whole or in part (a JSON export's
                keys = [(entity, "sentence" if _part_of(text, r.sentence) else text)]  # lines)
            elif entity == "PERSON":
                keys = [(entity, html.unescape(text))]
            elif entity == "GEO_COORDINATE" and "," in text:
                keys = [(entity, _normal(entity, part.strip())) for part in text.split(",")]
            elif entity == "PHONE":
                keys = [(entity, _phone_key(text, region))]
            else:
                keys = [(entity, _normal(entity, text))]
            for key in keys:
                if key in wanted:
                    seen.add(key)
                elif not any(key[1] and (key[1] in i or i in key[1]) for i in ignored if i):
                    out[(region, entity)]["fp"] += 1
        for key in wanted:
            out[(region, key[0])]["tp" if key in seen else "fn"] += 1
    return out


def _part_of(text: str, sentence: str) -> bool:
    plain = html.unescape(text.replace("<br>", "\n"))
    return bool(plain.strip()) and (
        plain in sentence or json.dumps(sentence, ensure_ascii=False).find(text) >= 0
    )


def run(
    classify: Callable[[str, list[list[str]], str], list[list[tuple[str, str]]]],
) -> dict[str, dict[tuple[str, str], Counter[str]]]:
    """Per format: (region, entity) -> counts. ``classify(region, records' lines, format)``
    gives (entity, matched text) per record."""
    assert TEMPLATES is not None and PEOPLE is not None
    recs = records(TEMPLATES, people(PEOPLE))
    by_region: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        by_region[r.person.region].append(r)
    results: dict[str, dict[tuple[str, str], Counter[str]]] = defaultdict(
        lambda: defaultdict(Counter)
    )
    for region, group in sorted(by_region.items()):
        for fmt, write in FORMATS.items():
            rendered = [write(r, n) for n, r in enumerate(group)]
            found = classify(region, rendered, fmt)
            for key, counts in score(group, fmt, found).items():
                results[fmt][key].update(counts)
    return results


def _cell(c: Counter[str]) -> str:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    if not tp + fn + fp:
        return "-"
    recall = f"{tp / (tp + fn):.3f}" if tp + fn else "-"
    precision = f"{tp / (tp + fp):.3f}" if tp + fp else "-"
    return f"{recall} / {precision} ({tp + fn})"


def _micro(counts: list[Counter[str]]) -> str:
    tp = sum(c["tp"] for c in counts)
    fp = sum(c["fp"] for c in counts)
    fn = sum(c["fn"] for c in counts)
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return (
        f"recall {tp / max(tp + fn, 1):.3f}, precision {tp / max(tp + fp, 1):.3f}, "
        f"F1 {f1:.3f} ({tp + fn} values)"
    )


def tables(results: dict[str, dict[tuple[str, str], Counter[str]]]) -> tuple[str, str]:
    """The summary (format x entity, all regions; region x entity, all formats) and the
    full table (entity x format x region)."""
    lines = ["| format | " + " | ".join(ENTITIES) + " |", "|---|" + "---|" * len(ENTITIES)]
    per_region: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for fmt, cells in results.items():
        row: dict[str, Counter[str]] = defaultdict(Counter)
        for (region, entity), counts in cells.items():
            row[entity].update(counts)
            per_region[(region, entity)].update(counts)
        lines.append(f"| {fmt} | " + " | ".join(_cell(row[e]) for e in ENTITIES) + " |")
    everything = [c for cells in results.values() for c in cells.values()]
    structured = [
        c for cells in results.values() for (_, e), c in cells.items() if e in ("PHONE", "EMAIL")
    ]
    lines += [
        "",
        f"micro, PHONE and EMAIL: {_micro(structured)}",
        f"micro, all six: {_micro(everything)}",
        "",
        "| region | " + " | ".join(ENTITIES) + " |",
        "|---|" + "---|" * len(ENTITIES),
    ]
    for region in sorted({r for r, _ in per_region}):
        lines.append(
            f"| {region} | " + " | ".join(_cell(per_region[(region, e)]) for e in ENTITIES) + " |"
        )
    full = ["| entity | format | region | recall / precision (values) |", "|---|---|---|---|"]
    for entity in ENTITIES:
        for fmt, cells in results.items():
            for (region, e), counts in sorted(cells.items()):
                if e == entity:
                    full.append(f"| {entity} | {fmt} | {region} | {_cell(counts)} |")
    return "\n".join(lines), "\n".join(full)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks-regions.md")
    args = parser.parse_args()
    if TEMPLATES is None:
        print("presidio-evaluator not found: run `make bench-classify` first", file=sys.stderr)
        return 2
    from perisai.classify import Classifier  # the system under test, only here
    from perisai.classify.files import csv_records

    classifiers: dict[str, Classifier] = {}

    def classify(region: str, rendered: list[list[str]], fmt: str) -> list[list[tuple[str, str]]]:
        """Each record's lines read as ``perisai classify`` reads such a file."""
        classifier = classifiers.setdefault(region, Classifier((region,)))
        flat = [line for lines in rendered for line in lines]
        per_line: list[list[tuple[str, str]]]
        if fmt == "CSV with header":
            per_line = []
            for record in csv_records([CSV_HEADER, *flat], "\n".join([CSV_HEADER, *flat])):
                found = classifier.scan_record(record)
                per_line.append([(m.entity, record[k or ""][m.start : m.end]) for k, m in found])
        else:
            json_file = fmt == "Telegram JSON export"
            scan = classifier.scan_json_lines if json_file else classifier.scan_lines
            per_line = [
                [(m.entity, line[m.start : m.end]) for m in matches]
                for line, matches in zip(flat, scan(flat), strict=True)
            ]
        out, at = [], 0
        for lines in rendered:
            out.append([m for found in per_line[at : at + len(lines)] for m in found])
            at += len(lines)
        return out

    summary, full = tables(run(classify))
    print(summary)
    if args.write:
        (ROOT / "docs" / "benchmarks-regions.md").write_text(
            "# Third-party people per region: entity x format x region\n\n"
            "Written by `benchmarks/thirdparty_regions.py --write`; see its docstring for "
            "where every value comes from.\n\n" + full + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
