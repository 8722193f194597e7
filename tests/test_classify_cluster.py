"""``classify --cluster ADDRESS``: the parts ``--jobs`` cuts, classified on a real Dask cluster
(a LocalCluster of two worker processes on loopback, shared by the module), give exactly one
process's counts on the mixed corpus, through the library and the command; what a user can get
wrong (no Dask, no scheduler, files the workers do not have, --jobs beside --cluster) is one
line and exit 2; a worker killed mid-run loses nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from perisai.classify.files import FileProfile, profile_file
from perisai.classify.on_cluster import classify_on_cluster, classify_part
from perisai.classify.parallel import merge_in_order, plan
from perisai.classify.profile import classifier_for
from perisai.cluster import INSTALL_HINT
from perisai.usecases import classify_files
from tests.clirun import SRC, perisai
from tests.mixed_corpus import PART, REGIONS, assert_examples_bounded, counts, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


# Even without a dashboard a scheduler serves HTTP, on 8787 unless told: another cluster on
# the machine may hold that port (a warning, here an error), so it gets a free loopback one.
LOOPBACK_HTTP = "127.0.0.1:0"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=LOOPBACK_HTTP,
    ) as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as connected:  # type: ignore[no-untyped-call]
        yield connected


def _address(cluster: LocalCluster) -> str:
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    return address


def _one_process(corpus: list[Path]) -> list[tuple[object, ...]]:
    classifier = classifier_for(REGIONS)
    return [counts(profile_file(path, classifier)) for path in corpus]


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stderr, held to be exactly one ``perisai: error:`` line, exit 2."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perisai: error: "), result.stderr
    return lines[0]


def test_the_cluster_gives_one_process_s_counts(corpus: list[Path], client: Client) -> None:
    classifier = classifier_for(REGIONS)
    alone = [profile_file(path, classifier) for path in corpus]
    moved: list[float] = []
    together = classify_on_cluster(corpus, REGIONS, client, moved.append, part_bytes=PART)
    assert [counts(p) for p in together] == [counts(p) for p in alone]
    assert alone[0].records == 4000 and alone[0].entities["PHONE"] > 4000  # not a trivial file
    assert together[4].skipped == "binary file (NUL bytes)"
    assert [p.path for p in together] == [str(path) for path in corpus]
    assert len(moved) > 20  # one step per part: the bar moves as the workers finish
    assert round(sum(moved)) == round(sum(path.stat().st_size for path in corpus) / 1e6)
    assert_examples_bounded(together, alone)


def test_the_library_takes_a_connected_client(corpus: list[Path], client: Client) -> None:
    report = classify_files(corpus, regions=REGIONS, cluster=client)
    assert [counts(p) for p in report.files] == _one_process(corpus)
    assert client.status == "running"  # the caller's client is left open


def test_worker_threads_each_get_a_classifier(corpus: list[Path]) -> None:
    # a worker's threads share its process; one classifier shared by them fails mid-scan
    # (hyperscan's ScratchInUseError), so each thread builds its own, once
    alone = _one_process(corpus)  # this process's shared classifier is built first
    parts = plan(corpus, PART)
    with ThreadPoolExecutor(4) as pool:
        profiles = list(pool.map(classify_part, parts, [REGIONS] * len(parts)))
    done = {part: profile for part, profile in zip(parts, profiles, strict=True)}
    assert all(isinstance(profile, FileProfile) for profile in profiles)
    merged = merge_in_order(corpus, parts, done)  # type: ignore[arg-type]
    assert [counts(p) for p in merged] == alone


def test_the_command_with_cluster_prints_the_same_report(
    corpus: list[Path], cluster: LocalCluster
) -> None:
    directory = str(corpus[0].parent)
    one = perisai("classify", directory, "--region", "MY,SG,ID")
    on_cluster = perisai(
        "classify", directory, "--region", "MY,SG,ID", "--cluster", _address(cluster)
    )
    assert one.returncode == on_cluster.returncode == 0, on_cluster.stderr
    assert on_cluster.stdout == one.stdout
    assert on_cluster.stderr == one.stderr  # the skipped binary file, and no Dask chatter
    assert "PHONE" in one.stdout and "core.bin: binary file" in one.stderr


def test_a_file_the_workers_do_not_have_is_one_clear_error(
    corpus: list[Path], cluster: LocalCluster
) -> None:
    # /proc/self/cwd is the reading process's own directory: this command sees the corpus
    # there, the workers (started elsewhere) do not: the same path, different storage
    name = "gateway.jsonl"
    assert not (Path.cwd() / name).exists()
    result = perisai(
        "classify", f"/proc/self/cwd/{name}", "--cluster", _address(cluster), cwd=corpus[0].parent
    )
    line = _error_line(result)
    assert f"/proc/self/cwd/{name} is not on Dask worker tcp://127.0.0.1:" in line
    assert "same path on every worker" in line
    assert result.stdout == ""  # no report that would count the file as empty


def test_cluster_with_jobs_is_one_clear_error(corpus: list[Path]) -> None:
    result = perisai("classify", str(corpus[0]), "--cluster", "tcp://127.0.0.1:9", "-j", "2")
    assert "--cluster and --jobs" in _error_line(result)


def test_an_unreachable_scheduler_is_one_clear_error(corpus: list[Path]) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = perisai("classify", str(corpus[0]), "--cluster", f"tcp://127.0.0.1:{port}")
    line = _error_line(result)
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in line
    assert _error_line(perisai("classify", str(corpus[0]), "--cluster", "127.0.0.1:8786"))


def test_without_dask_the_flag_says_what_to_install(corpus: list[Path]) -> None:
    # Dask is installed here: a None entry in sys.modules makes `import distributed` fail
    # in the command's process, as it does where the package is missing.
    run = (
        "import sys; sys.modules['distributed'] = None; "
        "from perisai.cli import main; sys.argv[0] = 'perisai'; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", run, "classify", str(corpus[0]), "--cluster", "tcp://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200", NO_COLOR="1"),
        timeout=120,
        check=False,
    )
    assert _error_line(result) == f"perisai: error: {INSTALL_HINT}"


def test_a_worker_killed_mid_run_loses_nothing(corpus: list[Path], client: Client) -> None:
    pids: dict[str, int] = client.run(os.getpid)
    victim = min(pids.values())
    killed: list[int] = []

    def kill_once(mb: float) -> None:  # after the first part, while the rest are queued
        if not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    together = classify_on_cluster(corpus, REGIONS, client, kill_once, part_bytes=PART)
    assert killed
    assert [counts(p) for p in together] == _one_process(corpus)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()
