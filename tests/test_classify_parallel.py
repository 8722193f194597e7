"""``classify --jobs N``: files cut at line boundaries and classified by several processes give
exactly one process's counts; examples stay bounded. The corpus mixes the formats a user has
(JSON lines with long and blank lines, key=value and plain log lines, CSV, gzip, a binary
file), built from the lab's synthetic messaging-app users.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from perisai import __version__
from perisai.classify.files import profile_file
from perisai.classify.parallel import classify_in_parallel, parts_of
from perisai.classify.profile import classifier_for
from tests.clirun import perisai
from tests.mixed_corpus import PART, REGIONS, assert_examples_bounded, counts, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


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


def test_two_processes_give_one_process_s_counts(corpus: list[Path]) -> None:
    classifier = classifier_for(REGIONS)
    alone = [profile_file(path, classifier) for path in corpus]
    moved: list[float] = []
    together = classify_in_parallel(corpus, REGIONS, 2, moved.append, part_bytes=PART)
    assert [counts(p) for p in together] == [counts(p) for p in alone]
    assert alone[0].records == 4000 and alone[0].entities["PHONE"] > 4000  # not a trivial file
    assert together[4].skipped == "binary file (NUL bytes)"
    assert round(sum(moved)) == round(sum(path.stat().st_size for path in corpus) / 1e6)
    assert_examples_bounded(together, alone)


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


def test_a_worker_re_importing_the_console_script_gets_no_command_line() -> None:
    """``spawn`` workers re-import the script that started the command: its entry module must
    not bring the command line (1.6 s of imports) into every worker."""
    check = "import sys, perisai.command; print('perisai.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    run = "import perisai.command, sys; sys.argv = ['perisai', '--version']; perisai.command.main()"
    version = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().endswith(__version__), version.stdout
