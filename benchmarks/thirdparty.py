"""The classifier on text it was not written beside: presidio-evaluator's sentence templates
(Microsoft's PII evaluation set, PyPI ``presidio-evaluator``, read from its wheel, never copied
here) filled by Faker in four locales, each sentence written out in seven log formats.

Nothing here imports perisai's detectors to make the data: values come from Faker, their truth
from the locale and from python-stdnum / phonenumbers, the formats from their published shapes
(RFC 5424 syslog, nginx's combined format, logfmt, JSON lines, CSV, a WhatsApp export).
Parameters (documented, fixed): seed 2024, 400 sentences per locale, locales en_US, en_GB,
id_ID, en_IN; only templates with a structured slot (phone, e-mail, card, IBAN) are used.

Truth: an e-mail is always personal data; a card when Luhn-valid with 13 to 19 digits (ISO/IEC
7812; Faker also writes 12-digit ones), an IBAN when python-stdnum says valid (Faker writes some
21-character GB ones), a phone number when phonenumbers calls it a valid number of the locale's
country (Faker also writes fictional ones, e.g. US area codes that do not exist): values that
fail their check are left out of the count either way. A match counts when its text,
normalised (digits; lower case), is the inserted value's; a phone's extension (x924) may be
left outside the match.

Run: ``.venv/bin/python benchmarks/thirdparty.py`` (``make bench-classify`` installs the
templates into ``.venv-bench``).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import phonenumbers
from faker import Faker
from stdnum import iban, luhn

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = next(
    (ROOT / ".venv-bench" / "lib").glob(
        "python3*/site-packages/presidio_evaluator/data_generator/raw_data/templates.txt"
    ),
    None,
)
SEED = 2024
PER_LOCALE = 400
LOCALES = {"en_US": "US", "en_GB": "GB", "id_ID": "ID", "en_IN": "IN"}
SLOTS = {
    "phone_number": "PHONE",
    "email": "EMAIL",
    "credit_card_number": "CREDIT_CARD",
    "iban": "IBAN",
}
_SLOT = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Sentence:
    text: str
    values: tuple[tuple[str, str], ...]  # (entity, value) inserted and counted
    ignored: tuple[str, ...]  # values inserted but not counted (fictional phone numbers)


def sentences(path: Path) -> Iterator[Sentence]:
    templates = [
        t.strip()
        for t in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if any(f"{{{{{slot}}}}}" in t for slot in SLOTS)
    ]
    rng = random.Random(SEED)
    for locale, region in LOCALES.items():
        fake = Faker(locale)
        fake.seed_instance(SEED)
        for _ in range(PER_LOCALE):
            template = rng.choice(templates)
            values: list[tuple[str, str]] = []
            ignored: list[str] = []
            text = _SLOT.sub(_filler(fake, region, values, ignored), template)
            yield Sentence(text, tuple(values), tuple(ignored))


def _filler(
    fake: Faker, region: str, values: list[tuple[str, str]], ignored: list[str]
) -> Callable[[re.Match[str]], str]:
    def fill(match: re.Match[str]) -> str:
        slot = match[1]
        value = str(getattr(fake, slot)()) if hasattr(fake, slot) else fake.word()
        if slot in SLOTS:
            if _true(SLOTS[slot], value, region):
                values.append((SLOTS[slot], value))
            else:
                ignored.append(value)
        return value

    return fill


def _true(entity: str, value: str, region: str) -> bool:
    """Whether an inserted value is the real thing, by its own check (see the docstring)."""
    if entity == "PHONE":
        return _valid_phone(value, region)
    if entity == "CREDIT_CARD":
        digits = re.sub(r"\D", "", value)
        return 13 <= len(digits) <= 19 and luhn.is_valid(digits)
    if entity == "IBAN":
        return bool(iban.is_valid(value))
    return True


def _valid_phone(value: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, region))
    except phonenumbers.NumberParseException:
        return False


# --- formats: how each line is written, and how to read a match's text back --------------

FORMATS: dict[str, Callable[[str, int], str]] = {
    "plain": lambda s, n: s,
    "syslog (RFC 5424)": lambda s, n: (
        f"<134>1 2024-05-02T08:11:{n % 60:02d}.003Z app01 support 4123 MSG - {s}"
    ),
    "logfmt": lambda s, n: (
        f"ts=2024-05-02T08:11:{n % 60:02d}Z level=info msg={json.dumps(s, ensure_ascii=False)}"
    ),
    "JSON lines": lambda s, n: json.dumps(
        {"ts": f"2024-05-02T08:11:{n % 60:02d}Z", "message": s}, ensure_ascii=False
    ),
    "nginx combined (query)": lambda s, n: (
        f"203.0.113.{n % 250} - - [02/May/2024:08:11:{n % 60:02d} +0000] "
        f'"GET /support/search?q={quote(s)} HTTP/1.1" 200 512 "-" "okhttp/4.12.0"'
    ),
    "WhatsApp export": lambda s, n: f"02/05/2024, 08:{n % 60:02d} - Customer: {s}",
}


def _no_extension(text: str) -> str:
    return re.split(r"\s*(?:x|ext\.?)\s*\d+$", text)[0]


def _normal(entity: str, text: str) -> str:
    text = unquote(text)
    return text.lower() if entity == "EMAIL" else re.sub(r"\D", "", text)


def evaluate(
    classify_lines: Callable[[list[str]], list[list[tuple[str, str]]]],
) -> dict[str, dict[str, Counter[str]]]:
    """Per format and entity: tp, fn, fp. ``classify_lines`` gives (entity, matched text)."""
    assert TEMPLATES is not None
    corpus = list(sentences(TEMPLATES))
    scores: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    rendered = {
        name: [write(s.text, n) for n, s in enumerate(corpus)] for name, write in FORMATS.items()
    }
    rendered["CSV, no header"] = [_csv_row(n, s.text) for n, s in enumerate(corpus)]
    for name, lines in rendered.items():
        for sentence, found in zip(corpus, classify_lines(lines), strict=True):
            _score(scores[name], sentence, found)
    return scores


def _csv_row(n: int, text: str) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([n, "2024-05-02", text])
    return out.getvalue().rstrip("\r\n")


def _score(
    score: dict[str, Counter[str]], sentence: Sentence, found: list[tuple[str, str]]
) -> None:
    wanted = {(entity, _normal(entity, _no_extension(value))) for entity, value in sentence.values}
    ignored = {_normal("PHONE", value) for value in sentence.ignored}
    seen: set[tuple[str, str]] = set()
    for entity, text in found:
        if entity not in SLOTS.values():
            continue
        key = (entity, _normal(entity, _no_extension(text)))
        if key in wanted:
            seen.add(key)
        elif not any(key[1] and key[1] in i for i in ignored):
            score[entity]["fp"] += 1
    for key in wanted:
        score[key[0]]["tp" if key in seen else "fn"] += 1


def main() -> int:
    if TEMPLATES is None:
        print(
            "presidio-evaluator's templates not found: run `make bench-classify` first",
            file=sys.stderr,
        )
        return 2
    from perisai.classify import Classifier  # the system under test, only here

    classifier = Classifier(tuple(LOCALES.values()))

    def classify_lines(lines: list[str]) -> list[list[tuple[str, str]]]:
        scan = classifier.scan_json_lines if lines[0].startswith("{") else classifier.scan_lines
        return [
            [(m.entity, line[m.start : m.end]) for m in matches]
            for line, matches in zip(lines, scan(lines), strict=True)
        ]

    scores = evaluate(classify_lines)
    entities = list(SLOTS.values())
    print("| format | " + " | ".join(f"{e} recall / precision" for e in entities) + " |")
    print("|---|" + "---|" * len(entities))
    total: dict[str, Counter[str]] = defaultdict(Counter)
    for name, per_entity in scores.items():
        cells = []
        for entity in entities:
            counts = per_entity[entity]
            total[entity].update(counts)
            cells.append(_cell(counts))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **all formats** | " + " | ".join(_cell(total[e]) for e in entities) + " |")
    tp = sum(c["tp"] for c in total.values())
    fp = sum(c["fp"] for c in total.values())
    fn = sum(c["fn"] for c in total.values())
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    print(
        f"\nmicro: recall {tp / (tp + fn):.3f}, precision {tp / max(tp + fp, 1):.3f}, "
        f"F1 {f1:.3f} ({tp + fn} values)"
    )
    return 0


def _cell(counts: Counter[str]) -> str:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    recall = f"{tp / (tp + fn):.3f}" if tp + fn else "-"
    precision = f"{tp / (tp + fp):.3f}" if tp + fp else "-"
    return f"{recall} / {precision} ({tp + fn})"


if __name__ == "__main__":
    sys.exit(main())
