"""A key=value log read as records: the transcoding step (C and its Python reference agree on
every line, tricky ones too), and what ``perisai classify`` counts in such a log equals what
it counts in the same events as JSON lines."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from perisai.classify import Classifier, jsonfields, logfmt
from perisai.classify.files import profile_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.applog import write_app_log  # noqa: E402
from benchmarks.textlog import as_key_value  # noqa: E402

TRICKY = [
    b"",
    b"   ",
    b"ts=2024-05-02T08:11:40Z level=info msisdn=60123456789",
    b'msg="see you at 5" to=+60123456789',
    b"2024-05-02 08:11:40 INFO sms.submit msisdn=+447700123456 otp=551204",  # a prefix
    b'text="he said \\"hi\\"" ok=1',  # escapes inside quotes
    b'text="unterminated to=+60123456789',
    b'a="x"b c=d',  # a quote glued to the next word
    b"a=b free words after",  # free text after the pairs: text
    b'we"ird a=1',  # a quote in the prefix
    b"back\\slash a=1",
    b"a= b=",  # empty values
    b"=b c=d",
    b"key.with-dots_1=v\r",
    b"tab\tsep=1\tx=2",
    "nama=Siti\u00a0Aminah kota=Kuala Lumpur".encode(),
    "备注 phone=+60123456789".encode(),
    b'{"already": "json"}',
    b" ".join(b"k%d=v" % n for n in range(300)),  # more pairs than a line may have
]


def test_every_line_is_kept_in_place() -> None:
    data = b"\n".join(TRICKY) + b"\n"
    out = logfmt.py_as_json(data)
    assert out.count(b"\n") == data.count(b"\n")


@pytest.mark.parametrize("line", TRICKY)
def test_a_transcoded_line_is_json_and_keeps_its_values(line: bytes) -> None:
    out = logfmt.py_as_json(line)
    if out == line:
        return  # read as text
    record = json.loads(out)
    assert isinstance(record, dict) and record
    for key, value in record.items():
        assert key == "_" or key.encode() + b"=" in line
        assert isinstance(value, str)


def test_what_is_a_record_and_what_stays_text() -> None:
    assert json.loads(logfmt.py_as_json(TRICKY[4])) == {
        "_": "2024-05-02 08:11:40 INFO sms.submit",
        "msisdn": "+447700123456",
        "otp": "551204",
    }
    for text in (TRICKY[8], TRICKY[-1], b"no pairs at all"):
        assert logfmt.py_as_json(text) == text


def _random_lines(count: int) -> list[bytes]:
    rng = random.Random(15)
    alphabet = [b"a", b"k", b"_", b"=", b'"', b"\\", b" ", b"\t", b"\r", b"1", b"+", b".", b"-"]
    alphabet += ["é".encode(), b"{", b"}", b":"]
    return [b"".join(rng.choice(alphabet) for _ in range(rng.randrange(40))) for _ in range(count)]


@pytest.mark.skipif(not jsonfields.COMPILED, reason="the C step is not built here")
def test_compiled_step_equals_the_reference() -> None:
    for line in [*TRICKY, *_random_lines(3000)]:
        assert logfmt.as_json(line) == logfmt.py_as_json(line), line
    block = b"\n".join([*TRICKY, *_random_lines(500)])
    assert logfmt.as_json(block) == logfmt.py_as_json(block)


@pytest.fixture(scope="module")
def service_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("logfmt")
    jsonl, text = work / "app.jsonl", work / "app.log"
    write_app_log(jsonl, 3_000_000)
    as_key_value(jsonl, text)
    return jsonl, text


def test_a_key_value_log_counts_as_its_json_lines(service_log: tuple[Path, Path]) -> None:
    """The same events as JSON lines and as key=value text: the same records, the same
    entities, field for field."""
    jsonl, text = service_log
    as_json = profile_file(jsonl, Classifier(("MY",)))
    as_text = profile_file(text, Classifier(("MY",)))
    assert as_text.kind == "text" and as_text.records == as_json.records
    assert as_text.records_with_personal_data == as_json.records_with_personal_data
    assert as_text.entities == as_json.entities
    assert as_json.entities["PHONE"] > 1000 and as_json.entities["MESSAGE_BODY"] > 500


def test_the_python_step_gives_the_same_profile(
    service_log: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, text = service_log
    compiled = profile_file(text, Classifier(("MY",)))
    monkeypatch.setattr(logfmt, "as_json", logfmt.py_as_json)
    reference = profile_file(text, Classifier(("MY",)))
    assert reference.entities == compiled.entities and reference.records == compiled.records


def test_lines_that_are_no_records_are_read_as_text(tmp_path: Path) -> None:
    """A chat export, prose and a request line beside key=value lines: each read as text,
    its keywords before a value counting as they do in any text."""
    path = tmp_path / "mixed.log"
    path.write_text(
        "12/05/2024, 09:14 - Siti Aminah: see you at the station\n"
        "please call +60123456789, the code is 551204\n"
        "GET /otp?phone=%2B60123456789 HTTP/1.1\n"
        "event=otp.sent msisdn=60123456789\n",
        encoding="utf-8",
    )
    profile = profile_file(path, Classifier(("MY",)))
    assert profile.records == 4 and profile.records_with_personal_data == 4
    assert profile.entities == {"MESSAGE_BODY": 1, "PERSON": 1, "PHONE": 3, "OTP_CODE": 1}


def test_redact_leaves_nothing_the_record_path_finds(
    service_log: tuple[Path, Path], tmp_path: Path
) -> None:
    """``redact`` reads each line as written and ``classify`` reads key=value lines as
    records: what redact writes must hold nothing classify would still count."""
    from perisai.redact import Redactor, redact_lines

    _, text = service_log
    lines = text.read_text(encoding="utf-8").splitlines()[:4000]
    redacted = tmp_path / "redacted.log"
    redacted.write_text("\n".join(redact_lines(lines, Redactor(regions=("MY",)))) + "\n")
    before = profile_file(text, Classifier(("MY",)))
    assert before.entities["PHONE"] > 1000
    assert profile_file(redacted, Classifier(("MY",))).entities == {}
