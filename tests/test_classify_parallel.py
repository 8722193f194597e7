"""``classify --jobs N``: files cut at line boundaries and classified by several processes give
exactly one process's counts; examples stay bounded. The corpus mixes the formats a user has
(JSON lines with long and blank lines, key=value and plain log lines, CSV, gzip, a binary
file), built from the lab's synthetic messaging-app users.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
from pathlib import Path

import pytest

from perisai.classify.files import FileProfile, profile_file
from perisai.classify.parallel import classify_in_parallel, parts_of
from perisai.classify.profile import classifier_for
from perisai.findings import EXAMPLES_PER_ENTITY
from perisai.lab.seed import make_messages, make_people
from tests.clirun import perisai

REGIONS = ("MY", "SG", "ID")
PART = 64 * 1024  # small parts, so a 1 MB file is cut many times


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    rng = random.Random(7)
    people = make_people(60, rng)
    messages = make_messages(people, 4000, rng)
    root = tmp_path_factory.mktemp("corpus")
    jsonl = root / "gateway.jsonl"
    with jsonl.open("w", encoding="utf-8") as out:
        for number, message in enumerate(messages):
            record = {
                "ts": f"2026-12-07T10:{number % 60:02d}:00Z",
                "from": message.sender.e164,
                "to": message.recipient.national,
                "email": message.sender.email,
                "text": message.body,
                "loc": [message.lat, message.lon],
            }
            if number % 500 == 0:
                record["blob"] = "x" * 70000  # a long line across a cut
            out.write(json.dumps(record) + ("\n\n" if number % 97 == 0 else "\n"))
    log = root / "app.log"
    with log.open("w", encoding="utf-8") as out:
        for number, message in enumerate(messages):
            if number % 2:
                out.write(f"level=info user={message.sender.email} phone={message.sender.e164}\n")
            else:
                out.write(f"{number} sms to {message.recipient.national}: {message.body}\n")
    csv_file = root / "users.csv"
    csv_file.write_text(
        "name,phone,email\n" + "".join(f"{p.name},{p.national},{p.email}\n" for p in people),
        encoding="utf-8",
    )
    archive = root / "old.jsonl.gz"
    with gzip.open(archive, "wt", encoding="utf-8") as out:
        for message in messages[:500]:
            out.write(json.dumps({"from": message.sender.e164, "text": message.body}) + "\n")
    binary = root / "core.bin"
    binary.write_bytes(b"\x00\x01" * 40000)
    return [jsonl, log, csv_file, archive, binary]


def test_cuts_fall_on_line_boundaries(corpus: list[Path]) -> None:
    jsonl = corpus[0]
    parts = parts_of(0, jsonl, PART)
    assert len(parts) > 10
    data = jsonl.read_bytes()
    assert parts[0].start == 0 and parts[-1].end == len(data)
    for before, after in itertools.pairwise(parts):
        assert before.end == after.start and data[after.start - 1 : after.start] == b"\n"
    # a CSV (its header names the columns), a gzip stream and a binary file stay whole
    for path in corpus[2:]:
        assert [(p.start, p.end, p.kind) for p in parts_of(0, path, 16)] == [(0, 0, "")]


def _counts(profile: FileProfile) -> tuple[object, ...]:
    return (
        profile.kind,
        profile.records,
        profile.records_with_personal_data,
        profile.bytes_read,
        dict(sorted(profile.entities.items())),
        profile.skipped,
    )


def test_two_processes_give_one_process_s_counts(corpus: list[Path]) -> None:
    classifier = classifier_for(REGIONS)
    alone = [profile_file(path, classifier) for path in corpus]
    moved: list[float] = []
    together = classify_in_parallel(corpus, REGIONS, 2, moved.append, part_bytes=PART)
    assert [_counts(p) for p in together] == [_counts(p) for p in alone]
    assert alone[0].records == 4000 and alone[0].entities["PHONE"] > 4000  # not a trivial file
    assert together[4].skipped == "binary file (NUL bytes)"
    assert round(sum(moved)) == round(sum(path.stat().st_size for path in corpus) / 1e6)
    for profile, single in zip(together, alone, strict=True):
        kinds = [example.split(":", 1)[0] for example in profile.examples]
        assert all(kinds.count(kind) <= EXAMPLES_PER_ENTITY for kind in set(kinds))
        assert set(kinds) == {e.split(":", 1)[0] for e in single.examples}


def test_the_command_with_jobs_matches_one_process(corpus: list[Path]) -> None:
    directory = str(corpus[0].parent)
    one = perisai("classify", directory, "--format", "json", "--region", "MY,SG,ID")
    two = perisai("classify", directory, "--format", "json", "--region", "MY,SG,ID", "-j", "2")
    assert one.returncode == two.returncode == 0, two.stderr
    first, second = json.loads(one.stdout), json.loads(two.stdout)
    for key in ("records", "records_with_personal_data", "entities", "bytes_read"):
        assert first["total"][key] == second["total"][key], key
    bad = perisai("classify", directory, "--jobs", "0")
    assert bad.returncode == 2 and "--jobs" in bad.stderr
