"""``perisai scan --cluster``: discovery and probes as Dask tasks on a real local cluster.

A LocalCluster of two worker processes (two threads each, nannies that restart a dead worker)
on 127.0.0.1 scans real lab servers, exposed and secured, plus ports that accept and never
answer: its report must hold the findings a local scan of the same ports holds, also when a
worker is killed mid-scan. The /8 path is checked for its feeding, never scanned.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from distributed import Client, LocalCluster
from typer.testing import CliRunner

from perisai.cli import app
from perisai.cluster import INSTALL_HINT, connect
from perisai.cluster_scan import DISCOVERY_CHUNK, chunks, run_bounded, scan_on_cluster
from perisai.findings import Auth, Finding, ScanReport
from perisai.lab.instances import free_port
from perisai.probes import ScanConfig
from perisai.scan_tasks import WorkerLoop, discover_chunk
from perisai.scanner import Endpoint, Scanner, endpoints, planned
from perisai.targets import MAX_ADDRESSES_ON_CLUSTER, address_cap, parse_targets
from perisai.usecases import UseCaseError, scan_and_save
from tests.clirun import perisai
from tests.conftest import LabServers
from tests.hostile import serving, silent

# The default timeout: a shorter one lets a loaded machine's slow read pass for a server that
# sent nothing, and the two scans compared would then differ for that reason alone.
CONFIG = ScanConfig(timeout=3.0, probe_deadline=30.0)
SERVICES = ("redis", "postgres", "mqtt")
SILENT_PORTS = 2  # each holds a probe task for about 9 s: time to kill a worker mid-scan
OPEN = (Auth.NONE, Auth.DEFAULT_CREDENTIALS)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes on loopback, each with a nanny that restarts it if it dies; the
    client is the one ``--cluster`` makes (not the process's default client)."""
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            threads_per_worker=2,  # a silent port's probe holds a thread for about 9 s
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # its health and metrics pages, on a free loopback port (8787 may be taken)
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        connect(cluster.scheduler_address) as dask_client,  # as --cluster connects
    ):
        yield dask_client


@pytest.fixture(scope="module")
def scanned(lab_server: LabServers) -> Iterator[dict[str, Any]]:
    """The lab's exposed and secured servers, silent ports and a closed one: their ports."""
    with ExitStack() as stack:
        silent_ports = [stack.enter_context(serving(silent)) for _ in range(SILENT_PORTS)]
        servers = {
            f"{service}-{'exposed' if exposed else 'secured'}": lab_server(service, exposed).port
            for service in SERVICES
            for exposed in (True, False)
        }
        closed = free_port()
        yield {
            "servers": servers,
            "ports": sorted([*servers.values(), *silent_ports, closed]),
            "closed": closed,
        }


@pytest.fixture(scope="module")
def local_report(scanned: dict[str, Any]) -> ScanReport:
    """What a scan in this process reports: the reference for every cluster scan."""
    return asyncio.run(Scanner(CONFIG).scan(parse_targets(["127.0.0.1"]), scanned["ports"]))


def _seen(findings: tuple[Finding, ...] | list[Finding]) -> list[tuple[object, ...]]:
    """What both scans must agree on, finding by finding (evidence wording aside)."""
    return [
        (
            f.id,
            f.rule,
            f.target,
            f.severity,
            f.auth,
            f.object,
            f.asset,
            f.ransom_note,
            tuple(sorted(f.data.entities.items())),
        )
        for f in findings
    ]


@pytest.mark.servers
def test_the_cluster_finds_what_a_local_scan_finds(
    client: Client, scanned: dict[str, Any], local_report: ScanReport
) -> None:
    report = scan_on_cluster(client, parse_targets(["127.0.0.1"]), scanned["ports"], CONFIG)

    assert _seen(report.findings) == _seen(local_report.findings)
    assert report.rules.keys() == local_report.rules.keys()
    assert report.notes == local_report.notes
    by_port: dict[int, list[Finding]] = {}
    for finding in report.findings:
        by_port.setdefault(finding.target.port, []).append(finding)
    for name, port in scanned["servers"].items():
        service = name.split("-")[0]
        assert {f.target.service for f in by_port[port]} == {service}, name
        opened = [f for f in by_port[port] if f.auth in OPEN]
        if name.endswith("-exposed"):
            assert opened, f"{name}: open access not proven on the cluster"
        else:
            assert not opened, f"{name}: a secured server reported open: {opened}"
    assert scanned["closed"] not in by_port
    silent_rules = {f.rule for p in scanned["ports"] for f in by_port.get(p, [])}
    assert "service.unidentified" in silent_rules


class _Phases:
    """Progress that remembers the phases it was told of, and how far each got."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.totals: dict[str, int] = {}
        self.current = ""

    def phase(self, name: str, total: int) -> None:
        self.current, self.totals[name], self.done[name] = name, total, 0

    def advance(self, steps: float = 1) -> None:
        self.done[self.current] += steps


@pytest.mark.servers
def test_a_worker_killed_mid_scan_loses_nothing(
    client: Client, scanned: dict[str, Any], local_report: ScanReport
) -> None:
    progress = _Phases()
    outcome: dict[str, ScanReport] = {}

    def scan() -> None:
        targets = parse_targets(["127.0.0.1"])
        outcome["report"] = scan_on_cluster(client, targets, scanned["ports"], CONFIG, progress)

    thread = threading.Thread(target=scan)
    thread.start()
    busy: list[str] = []
    stop = time.monotonic() + 60
    while not busy and thread.is_alive() and time.monotonic() < stop:
        if progress.current == "probe":
            processing = client.processing()  # type: ignore[no-untyped-call]
            busy = [worker for worker, keys in processing.items() if keys]
        time.sleep(0.05)
    assert busy, "no worker was ever seen probing"
    pids = client.run(os.getpid)
    os.kill(pids[busy[0]], signal.SIGKILL)  # the nanny starts a new worker
    thread.join(120)

    assert not thread.is_alive()
    assert _seen(outcome["report"].findings) == _seen(local_report.findings)
    assert (
        progress.done["probe"]
        == progress.totals["probe"]
        == len({(f.target.host, f.target.port) for f in local_report.findings})
    )
    client.wait_for_workers(2, timeout=60)
    assert pids[busy[0]] not in client.run(os.getpid).values()


def test_discovery_chunks_cross_the_cluster_and_find_the_open_port(client: Client) -> None:
    """A /22 on one port is two chunks: 127.0.0.1 listens, the rest of 127.0.0.0/22 refuses."""
    with serving(silent) as port:
        progress = _Phases()
        config = ScanConfig(timeout=1.0, probe_deadline=5.0)
        report = scan_on_cluster(
            client, parse_targets([f"127.0.0.0/22:{port}"]), None, config, progress
        )
    assert progress.totals["discover"] == 1024 == progress.done["discover"] + 2  # .0 and .255
    assert [(f.target.host, f.target.port) for f in report.findings] == [("127.0.0.1", port)]


def test_no_more_tasks_in_flight_than_the_bound(client: Client) -> None:
    closed = free_port()
    taken = 0

    def feed() -> Iterator[list[Endpoint]]:
        nonlocal taken
        for n in range(12):
            taken += 1
            yield [Endpoint(f"127.0.0.{n + 1}", closed)]

    done = 0
    for _, found in run_bounded(client, discover_chunk, CONFIG, feed(), in_flight=3):
        assert found == []
        assert taken - done <= 3 + 1  # the bound, and the one taken to refill it
        done += 1
    assert done == taken == 12


def test_a_slash_8_on_a_cluster_is_fed_in_chunks_never_listed() -> None:
    targets = parse_targets(["127.0.0.0/8"], cap=address_cap(cluster=True, authorized=True))
    ports = (5432, 6379)
    assert planned(targets, ports) == MAX_ADDRESSES_ON_CLUSTER * 2

    tracemalloc.start()
    try:
        feed = chunks(endpoints(targets, ports), DISCOVERY_CHUNK)
        assert isinstance(feed, Iterator)
        first = [next(feed) for _ in range(4)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [len(chunk) for chunk in first] == [DISCOVERY_CHUNK] * 4
    assert first[0][:3] == [
        Endpoint("127.0.0.1", 5432),
        Endpoint("127.0.0.1", 6379),
        Endpoint("127.0.0.2", 5432),
    ]
    assert peak < 8 << 20  # 33M endpoints listed would take gigabytes


def test_a_slash_8_without_cluster_is_refused_saying_cluster_lifts_the_cap() -> None:
    result = perisai("scan", "127.0.0.0/8", "--no-store", "--authorized")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "at most 65536 (a /16)" in result.stderr and "--cluster" in result.stderr

    unauthorised = perisai("scan", "127.0.0.0/8", "--no-store", "--cluster", "tcp://127.0.0.1:1")
    assert unauthorised.returncode == 2
    assert "add --authorized for a /8" in unauthorised.stderr


def test_a_slash_8_with_cluster_and_authorized_gets_as_far_as_the_scheduler() -> None:
    """Accepted: the only error left is the scheduler nobody runs. One line, no traceback."""
    address = f"tcp://127.0.0.1:{free_port()}"
    result = perisai(
        "scan", "127.0.0.0/8", "--no-store", "--authorized", "--cluster", address, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"cannot reach the Dask scheduler at {address}" in result.stderr


def test_without_dask_the_flag_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # simulates the missing package: a None entry makes `import distributed` fail
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = CliRunner().invoke(
        app, ["scan", "127.0.0.1:1", "--no-store", "--cluster", "tcp://127.0.0.1:8786"]
    )
    assert result.exit_code == 2
    assert result.stderr == f"perisai: error: {INSTALL_HINT}\n"
    with pytest.raises(UseCaseError, match="perisai\\[cluster\\]"):
        scan_and_save(["127.0.0.1:1"], db=None, cluster="tcp://127.0.0.1:8786")


def test_a_task_past_its_deadline_gives_its_thread_back() -> None:
    """The worker loop's backstop: a coroutine that never ends is cancelled at its deadline."""
    loop = WorkerLoop()
    try:
        hung = loop.loop.create_future()

        async def hang() -> int:
            await hung
            return 1

        async def quick() -> int:
            return 2

        assert loop.run(hang(), 0.2) is None
        assert loop.run(quick(), 5) == 2
        time.sleep(0.1)
        assert hung.cancelled()
    finally:
        loop.close()
