"""The mixed corpus the parallel and cluster classify tests compare one process with: the
formats a user has (JSON lines with long and blank lines, key=value and plain log lines, CSV,
gzip, a binary file), built from the lab's synthetic messaging-app users."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from perisai.classify.files import FileProfile
from perisai.findings import EXAMPLES_PER_ENTITY
from perisai.lab.seed import make_messages, make_people

REGIONS = ("MY", "SG", "ID")
PART = 64 * 1024  # small parts, so a 1 MB file is cut many times


def write_corpus(root: Path) -> list[Path]:
    """Five files under ``root``: JSON lines, a mixed text log, CSV, a gzip'd log, binary."""
    rng = random.Random(7)
    people = make_people(60, rng)
    messages = make_messages(people, 4000, rng)
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


def counts(profile: FileProfile) -> tuple[object, ...]:
    """Everything a profile counts (examples aside, which only stay bounded)."""
    return (
        profile.kind,
        profile.records,
        profile.records_with_personal_data,
        profile.bytes_read,
        dict(sorted(profile.entities.items())),
        profile.skipped,
    )


def assert_examples_bounded(together: list[FileProfile], alone: list[FileProfile]) -> None:
    """Merged profiles keep a few examples per type, of the types one process shows."""
    for profile, single in zip(together, alone, strict=True):
        kinds = [example.split(":", 1)[0] for example in profile.examples]
        assert all(kinds.count(kind) <= EXAMPLES_PER_ENTITY for kind in set(kinds))
        assert set(kinds) == {e.split(":", 1)[0] for e in single.examples}
