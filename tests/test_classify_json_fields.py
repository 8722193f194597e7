"""The JSON-lines field step: the compiled ``locate`` equals the Python reference, and the field
cache changes nothing but speed (the answers stay the record walk's)."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from benchmarks.applog import write_app_log
from benchmarks.corpus import iter_records

from perisai.classify import Classifier, engine, fieldcache, jsonfields
from perisai.classify.detectors import DETECTORS
from perisai.classify.files import profile_file

# Lines the step must either read or hand to the slow path, never misread.
AWKWARD = [
    '{"msisdn": "60123456789", "client_ip": "203.0.113.7"}',
    '{"a": {"phone": "+60 12-345 6789"}, "b": [1, 2]}',
    '{"recipient": ["60198765432", "60123456780"]}',  # an array: slow path
    '{"body": "he said \\"call 012-345 6789\\""}',  # escapes: slow path
    '{"card": 4111111111111111, "note": "x"}',  # a value trigger on a number: slow path
    '{"203.0.113.7": "a key that looks like an IP"}',  # hits in keys are not values
    '{"payload": "{\\"to\\": \\"60123456780\\"}"}',  # JSON inside a string
    '{"data": "[1, 2, 3]", "lat": 3.139003}',  # a string that may hold JSON
    '{"note": ", x", "email": "siti@example.org"}',  # a string starting with a comma
    '{"email":"a.b@example.org","lat":-3.5,"lon":101.686855}',  # no spaces
    '{ "phone" : "+60 12-345 6789" , "ok" : true }',  # spaces everywhere
    '{"sender": {"name": "Siti Aminah"}}',  # a telling key over an object
    '{"msisdn": null, "to": false, "from": 60123456789}',
    '{"email": "unterminated@example.org',
    "plain text with siti@example.org and +60 12-345 6789",
    '"just a string with 203.0.113.7"',
    *(  # fields just under, at and just over the longest the cache keeps (256 bytes)
        '{"body": "' + "kata " * 48 + "x" * n + '"}' for n in (5, 6, 7)
    ),
    *(  # one-time codes, and look-alikes the template rule must keep away from templates
        '{"sms_text": "Your TAC is 482913. Do not share it."}',
        '{"sms_text": "Your TAC is 012345. Do not share it."}',
        '{"sms_text": "Your TAC is 01234567 now"}',  # eight digits from 0: a phone trigger
        '{"body": "OTP 4829 for 60123456789"}',  # a number beside the code
        '{"text": "code 4829 ref 1234 5678 9012"}',  # a long digit group
        '{"msisdn": "60123456789", "sms": "kod pengesahan 5521", "to": "code 4829"}',
        '{"code": "4829"}',  # the keyword in the key: no hit in raw JSON
        '{"imei_of_the_registered_handset_x": "TAC 1234 356938035643809"}',
    ),
    "",
    "   ",
    '{"ip": "203.0.113.7"}\r',
    '{"nama": "Ünsal Çelik", "note": "日本語 call +60 12-345 6789"}',
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(("MY",))


def _blocks(lines: list[str], size: int = 64) -> list[bytes]:
    return ["\n".join(lines[i : i + size]).encode() for i in range(0, len(lines), size)]


def _corpus_lines(count: int) -> list[str]:
    records = itertools.islice(iter_records(seed=5), count)
    return [json.dumps(r.record, ensure_ascii=False) for r in records]


Cache = dict[bytes, Any]


def _both(
    classifier: Classifier, data: bytes, young: Cache, old: Cache, templates: Cache | None = None
) -> tuple[Any, Any, tuple[Cache, Cache]]:
    """Both implementations over ``data``, each with its own copy of the cache; the compiled
    one's answer, the reference's, and the cache after each (fields move up from ``old``)."""
    compiled_hits = jsonfields.new_hits()
    classifier._database.scan(data, match_event_handler=compiled_hits)
    python_hits = jsonfields.PyHits()
    python_hits.hits = compiled_hits.pairs()
    first_key = engine._FIRST_KEY_ID
    limit = fieldcache.MAX_CACHED_FIELD_BYTES
    templates = templates or {}
    otp = engine._TEMPLATE_ID
    c_young, c_old, p_young, p_old = dict(young), dict(old), dict(young), dict(old)
    compiled = jsonfields.locate(
        data, compiled_hits, first_key, c_young, c_old, limit, True, templates, otp
    )
    reference = jsonfields.py_locate(
        data, python_hits, first_key, p_young, p_old, limit, True, templates, otp
    )
    compiled, reference = jsonfields.Located(*compiled), jsonfields.Located(*reference)
    # without the value starts (what counting asks for), the same but for them
    bare = jsonfields.locate(
        data, compiled_hits, first_key, dict(young), dict(old), limit, False, templates, otp
    )
    assert jsonfields.Located(*bare) == reference._replace(values=[])
    assert (c_young, c_old) == (p_young, p_old)
    return compiled, reference, (c_young, c_old)


def test_the_extension_is_built_where_a_compiler_is() -> None:
    """Without this, every comparison below would silently compare Python with itself."""
    if shutil.which("cc") or shutil.which("gcc"):
        assert jsonfields.COMPILED, "a C compiler is here but perisai.classify._jsonfields is not"


@pytest.mark.skipif(not jsonfields.COMPILED, reason="the C step is not built here")
def test_compiled_locate_equals_the_reference(classifier: Classifier) -> None:
    lines = _corpus_lines(1500) + AWKWARD
    random.Random(2).shuffle(lines)
    young: Cache = {}
    old: Cache = {}
    templates: Cache = {}
    located = moved = templated = 0
    for round_ in range(2):  # with nothing cached, then with every field of round one cached
        for data in _blocks(lines):
            compiled, reference, (young_after, _) = _both(classifier, data, young, old, templates)
            assert compiled == reference
            located += len(reference.missing)
            moved += len(young_after) - len(young)
            if round_ == 0:  # a third held nothing, the others something; half of them old
                for n, missing in enumerate(reference.missing):
                    field = data[missing[1] - 1 : missing[5]]
                    if missing[6] == jsonfields.TEMPLATED:
                        templated += 1
                        template = jsonfields.template_of(data, *missing[1:2], *missing[3:6])
                        templates[template] = (template, "held")
                        continue
                    (old if n % 2 else young)[field] = None if n % 3 == 0 else (field, "held")
    assert located > 1000 and moved > 100 and templated > 10  # not vacuous
    # round two found every templated field by its template
    assert not any(
        m[6] == jsonfields.TEMPLATED
        for data in _blocks(lines)
        for m in _both(classifier, data, young, old, templates)[1].missing
    )


@pytest.mark.skipif(not jsonfields.COMPILED, reason="the C step is not built here")
def test_compiled_locate_survives_mangled_json(classifier: Classifier) -> None:
    """Cut, spliced and byte-flipped lines: the same answer from both, never a crash."""
    rnd = random.Random(9)
    lines = _corpus_lines(400) + AWKWARD
    alphabet = b'"{}[],:\\ \n\r\t0123456789.+-@abc'
    for _ in range(300):
        data = bytearray("\n".join(rnd.sample(lines, 6)).encode())
        for _ in range(rnd.randint(1, 12)):
            at = rnd.randrange(len(data))
            choice = rnd.random()
            if choice < 0.4:
                data[at] = rnd.choice(alphabet)
            elif choice < 0.7:
                del data[at : at + rnd.randint(1, 20)]
            else:
                data[at:at] = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8)))
        compiled, reference, _ = _both(classifier, bytes(data), {}, {})
        assert compiled == reference


def test_count_records_equals_the_reference() -> None:
    rnd = random.Random(3)
    for _ in range(5000):
        data = bytes(rnd.choice(b"ab {}\n\t\r\x0b\x0c") for _ in range(rnd.randint(0, 16)))
        assert jsonfields.count_records(data) == jsonfields.py_count_records(data), data


def _walked(classifier: Classifier, line: str) -> Counter[tuple[str, str]]:
    try:
        record = json.loads(line)
    except ValueError:
        return Counter((m.entity, m.masked) for m in classifier.scan_text(line))
    return Counter((m.entity, m.masked) for _, m in classifier.scan_record(record))


# The share of new values above which a block's lines go the slow way: the default, never
# (every new field classified field by field) and always (every line holding one).
MODES = [engine.MOSTLY_NEW, 1.0, 0.0]


@pytest.mark.parametrize("mostly_new", MODES)
def test_field_path_agrees_with_the_record_walk_on_a_service_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mostly_new: float
) -> None:
    """The benchmark's service log, where fields recur: read twice, so the second time every
    answer comes from the field cache, and each time equal to the record walk."""
    monkeypatch.setattr(engine, "MOSTLY_NEW", mostly_new)
    path = tmp_path / "app.jsonl"
    write_app_log(path, 400_000, users=50)
    lines = path.read_text(encoding="utf-8").splitlines()
    classifier = Classifier(("MY",))
    walker = Classifier(("MY",))
    for _ in range(2):
        found = 0
        for line, matches in zip(lines, classifier.scan_json_lines(lines), strict=True):
            assert Counter((m.entity, m.masked) for m in matches) == _walked(walker, line), line
            assert all(line[m.start : m.end] for m in matches)
            found += len(matches)
        assert found > len(lines)
    assert 0 < len(classifier._fields) < len(lines)  # fields recur: far fewer than lines


def test_spans_from_the_cache_index_each_line(classifier: Classifier) -> None:
    line = json.dumps({"ts": "2026-11-01", "email": "siti@example.org", "ip": "203.0.113.7"})
    for _ in range(2):  # the second time both fields come from the cache
        (matches,) = classifier.scan_json_lines([line])
        assert {line[m.start : m.end] for m in matches} == {"siti@example.org", "203.0.113.7"}


def test_one_time_codes_are_remembered_by_template_only() -> None:
    classifier = Classifier(("MY",))
    lines = [json.dumps({"sms_text": f"Your TAC is {n:06d}. Do not share it."}) for n in range(50)]
    results = list(classifier.scan_json_lines(lines))
    assert all([m.entity for m in r] == ["OTP_CODE"] for r in results)
    assert len(classifier._fields) == 0
    assert list(classifier._fields.templates) == [
        b'"sms_text": "Your TAC is 000000. Do not share it."'
    ]
    assert {r[0].masked for r in results} == {"<code, 6 digits>"}


def _code_messages(rnd: random.Random) -> list[str]:
    """Code messages whose digits vary around one template each, with neighbours that look like
    other entities: phone numbers, cards, IDs, IPs, dates, numbers glued to the code."""
    templates = [
        "Your TAC is #. Do not share it with anyone.",
        "OTP # (valid 5 min)",
        "kod pengesahan anda # untuk 60123456789",
        "Your code is # , card 4111 1111 1111 1111",
        "verification code: # ref ORD-2026-#",
        "PIN #, call 012-345 6789 if this was not you",
        "code # from 203.0.113.# at 2026-11-23",
        "passcode #.# is not a code",
        "Kod # IC 900101-14-5566",
        "code # imei 35693803564380#",
        "TAC #####",
    ]
    messages = []
    for template in templates:
        for _ in range(40):
            text = template
            while "#" in text:
                digits = "".join(rnd.choice("0123456789") for _ in range(rnd.choice((4, 6, 8))))
                text = text.replace("#", digits, 1)
            messages.append(text)
    return messages


@pytest.mark.parametrize("key", ["sms_text", "body", "note", "msg", "phone", "name", "lat"])
def test_templated_codes_get_the_record_walks_answers(key: str) -> None:
    """Fields answered by their template give, line for line, what the record walk gives each
    line on its own, whatever the digits (keys that tell about digits are never templated)."""
    rnd = random.Random(11)
    lines = [json.dumps({"event": "otp.sent", key: text}) for text in _code_messages(rnd)]
    rnd.shuffle(lines)
    classifier = Classifier(("MY",))
    walker = Classifier(("MY",))
    for _ in range(2):  # the second time, every templated field is known
        for line, matches in zip(lines, classifier.scan_json_lines(lines), strict=True):
            assert Counter((m.entity, m.masked) for m in matches) == _walked(walker, line), line
    if key in ("sms_text", "body", "note", "msg"):
        assert 0 < len(classifier._fields.templates) < len(lines) // 4
    else:
        assert not classifier._fields.templates


def test_templates_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fieldcache, "TEMPLATE_ENTRIES", 8)
    classifier = Classifier(("MY",))
    lines = [json.dumps({f"sms_{n}": f"Your TAC is {n:06d}."}) for n in range(40)]
    assert all(classifier.scan_json_lines(lines))
    assert 0 < len(classifier._fields.templates) <= 8


def test_gated_detectors_need_long_digit_groups() -> None:
    """The template rule (``jsonfields.template_of``) holds because every detector that a
    keyword gates in hyperscan needs a run of twelve digits or more: a new one must too."""
    gated = {d.name for d in DETECTORS if d.keywords and d.gate}
    assert gated == {"imei-luhn", "my-mykad", "in-aadhaar", "th-id", "id-nik"}
    for detector in DETECTORS:
        if detector.name in gated:
            assert not detector.extract.search("a 1234 5678 1234-5678 12345678 b")


@pytest.mark.parametrize("mostly_new", MODES)
def test_the_field_cache_is_bounded(monkeypatch: pytest.MonkeyPatch, mostly_new: float) -> None:
    """Distinct records (every value new), through a tiny cache: the record walk's answers."""
    monkeypatch.setattr(engine, "MOSTLY_NEW", mostly_new)
    monkeypatch.setattr(fieldcache, "FIELD_CACHE_ENTRIES", 64)
    classifier = Classifier(("MY",))
    lines = _corpus_lines(600)
    fast = list(classifier.scan_json_lines(lines))
    assert len(classifier._fields) <= 64 + 600  # a generation, plus one block's moves
    walker = Classifier(("MY",))
    for line, matches in zip(lines, fast, strict=True):
        assert Counter((m.entity, m.masked) for m in matches) == _walked(walker, line)


@pytest.mark.parametrize("mostly_new", MODES)
def test_profile_counts_lines_right_whatever_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mostly_new: float
) -> None:
    """Lines read the slow way for different reasons (escapes, new values) in one block: each
    keeps its own answer, so the records-with-personal-data count stays the record walk's."""
    monkeypatch.setattr(engine, "MOSTLY_NEW", mostly_new)
    lines = [
        '{"body": "say \\"hi\\" now"}',  # escapes: slow, holds a message
        '{"email": "siti@example.org"}',
        '{"event": "tick"}',
        '{"note": "call +60 12-345 6789"}',
        '{"quote": "\\"", "card": "4111111111111112"}',  # slow, a hit that holds nothing
        '{"ip": "203.0.113.7"}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines * 3) + "\n", encoding="utf-8")
    walker = Classifier(("MY",))
    holding = sum(1 for line in lines if _walked(walker, line))
    profile = profile_file(path, Classifier(("MY",)))
    assert (profile.records, profile.records_with_personal_data) == (18, 3 * holding)
    assert holding == 4
    # each answer is tied to its own line, here where every line goes the slow way
    block = "\n".join(line for line in lines if "tick" not in line).encode()
    starts, results = Classifier(("MY",)).scan_json_block(block)
    for start, (matches, _) in zip(starts, results, strict=True):
        line = block[start:].split(b"\n", 1)[0].decode()
        assert Counter(m[0] for m in matches) == Counter(
            entity for entity, _ in _walked(walker, line).elements()
        ), line


def test_known_fields_in_a_block_of_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block mostly of new values that also holds fields already cached: the new ones go the
    slow way, the cached ones keep their answers, for counting and for spans alike."""
    classifier = Classifier(("MY",))
    known = [json.dumps({"email": f"user{n}@example.org"}) for n in range(20)]
    with monkeypatch.context() as patch:  # all new, but read field by field: now cached
        patch.setattr(engine, "MOSTLY_NEW", 1.0)
        classifier.scan_json_block("\n".join(known).encode())
    assert len(classifier._fields) == len(known)
    fresh = _corpus_lines(200)
    block = "\n".join(known + fresh)
    starts, results = classifier.scan_json_block(block.encode())
    walker = Classifier(("MY",))
    expected = sum((_walked(walker, line) for line in known + fresh), Counter())
    found = Counter((m[0], m[3]) for matches, _ in results for m in matches)
    assert found == expected and len(set(starts)) >= len(known)
    lines = list(Classifier(("MY",)).scan_json_lines(known))  # a fresh classifier, then
    assert [m.entity for r in lines for m in r] == ["EMAIL"] * len(known)


def test_python_step_gives_the_same_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the extension is not built, ``perisai classify`` answers the same, slower."""
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(_corpus_lines(300) + AWKWARD) + "\n", encoding="utf-8")
    compiled = profile_file(path, Classifier(("MY",))).to_dict()
    monkeypatch.setattr(jsonfields, "new_hits", jsonfields.PyHits)
    monkeypatch.setattr(jsonfields, "locate", jsonfields.py_locate)
    monkeypatch.setattr(jsonfields, "count_records", jsonfields.py_count_records)
    python = profile_file(path, Classifier(("MY",))).to_dict()
    assert python == compiled
    assert compiled["records"] == 300 + sum(1 for line in AWKWARD if line.strip())
