"""Scan throughput on a Dask cluster: a local scan vs ``--cluster`` with 1 and 2 workers.

The lab, all on 127.0.0.1: the core lab's real servers (Redis exposed, secured and
config-only, PostgreSQL exposed and secured, started by :mod:`perisai.lab`) and a few hundred
listeners run by a separate process, so discovery and probing both do work:

- ``--silent`` listeners accept and never answer (every fingerprint waits out its timeout,
  as a firewalled or tarpitting host makes a scanner wait);
- ``--banner`` listeners greet like an SSH server and read until the client leaves;
- ``--http`` listeners answer any request with an HTTP 404 (the HTTP probes ask, and decline).

Discovery covers ``--network`` (default 127.0.0.0/26) times every listener's and server's port:
only 127.0.0.1 listens, the rest of the range refuses at once. Each mode scans the same
targets; the table gives address:port pairs per second in discovery and probes (open
endpoints examined) per second, and checks that every mode reports the same findings.

The clusters are LocalClusters on 127.0.0.1, ``--threads`` threads per worker (default 16:
a worker then examines as many endpoints at once as a local scan does); workers are warmed
(perisai imported, probes and classifier built) before timing, as the local scanner is.

    python benchmarks/scan_cluster.py                      # the full run: 300 listeners
    python benchmarks/scan_cluster.py --silent 6 --banner 12 --http 12 --network 127.0.0.0/28

Every process it starts (listeners, lab servers, workers) is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from distributed import Client, LocalCluster  # noqa: E402

from perisai.cluster_scan import scan_on_cluster  # noqa: E402
from perisai.findings import ScanReport  # noqa: E402
from perisai.lab import CORE_SERVICES, Lab, scan_ports  # noqa: E402
from perisai.probes import ScanConfig  # noqa: E402
from perisai.scan_tasks import worker_loop  # noqa: E402
from perisai.scanner import Scanner  # noqa: E402
from perisai.targets import TargetSpec, parse_targets  # noqa: E402

LISTENER_LIFETIME = 3600.0  # the listener process stops itself after an hour, whatever happens
BANNER = b"SSH-2.0-OpenSSH_9.2p1 perisai-bench\r\n"
HTTP_404 = b"HTTP/1.1 404 Not Found\r\nServer: perisai-bench\r\nContent-Length: 0\r\n\r\n"


async def _listener(kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection to a ``silent``, ``banner`` or ``http`` listener, until the client
    leaves (an HTTP listener hangs up after its answer)."""
    try:
        if kind == "http":
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(HTTP_404)
        elif kind == "banner":
            writer.write(BANNER)
        await writer.drain()
        while kind != "http" and await reader.read(1024):
            pass
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def serve_listeners(counts: tuple[int, int, int], ports_out: Any) -> None:
    """The listener process: silent, banner and HTTP listeners on 127.0.0.1; sends their
    ports, then serves until terminated (or for an hour at most)."""

    async def main() -> None:
        kinds = ("silent", "banner", "http")
        servers = [
            await asyncio.start_server(partial(_listener, kind), "127.0.0.1", 0, backlog=256)
            for kind, count in zip(kinds, counts, strict=True)
            for _ in range(count)
        ]
        ports_out.send([server.sockets[0].getsockname()[1] for server in servers])
        await asyncio.sleep(LISTENER_LIFETIME)

    asyncio.run(main())


@dataclass
class Run:
    """One mode's timings and findings."""

    mode: str
    pairs: int = 0
    discover_s: float = 0.0
    open: int = 0
    probe_s: float = 0.0
    worker_rss_mb: float = 0.0
    findings: list[tuple[object, ...]] | None = None


class Clock:
    """Progress that timestamps the phases (discover, probe) and counts their steps."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.totals: dict[str, int] = {}

    def phase(self, name: str, total: int) -> None:
        self.marks[name], self.totals[name] = time.monotonic(), total

    def advance(self, steps: float = 1) -> None:
        return None


def timed(mode: str, scan: Callable[[Clock], ScanReport]) -> Run:
    clock = Clock()
    report = scan(clock)
    ended = time.monotonic()
    return Run(
        mode,
        pairs=clock.totals["discover"],
        discover_s=clock.marks["probe"] - clock.marks["discover"],
        open=clock.totals["probe"],
        probe_s=ended - clock.marks["probe"],
        findings=[
            (f.id, f.rule, f.target, f.severity, f.auth, f.object, f.asset, f.ransom_note, entities)
            for f in report.findings
            for entities in [tuple(sorted(f.data.entities.items()))]
        ],
    )


def _peak_rss_mb() -> float:
    """This process's peak resident set (run in each worker)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _warm(config: ScanConfig) -> None:
    """Build this worker's probes and classifier before the clock starts."""
    worker_loop().scanner(config)


def on_cluster(
    workers: int, threads: int, targets: list[TargetSpec], ports: list[int], config: ScanConfig
) -> Run:
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.run(_warm, config)
        run = timed(
            f"--cluster, {workers} worker{'s' if workers > 1 else ''}",
            lambda clock: scan_on_cluster(client, targets, ports, config, clock),
        )
        run.worker_rss_mb = max(client.run(_peak_rss_mb).values())
    return run


def table(runs: list[Run], threads: int, listeners: int, servers: int) -> str:
    lines = [
        f"{listeners} loopback listeners and {servers} lab servers; {runs[0].pairs} address:port "
        f"pairs in discovery, {runs[0].open} open; {threads} threads per worker; "
        f"{os.cpu_count()} CPUs.",
        "",
        "| mode | discovery s | pairs/s | probe s | probes/s | worker peak RSS MB | findings |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        same = "same as local" if run.findings == runs[0].findings else "DIFFERENT"
        rss = f"{run.worker_rss_mb:.0f}" if run.worker_rss_mb else "–"
        lines.append(
            f"| {run.mode} | {run.discover_s:.2f} | {run.pairs / run.discover_s:,.0f} | "
            f"{run.probe_s:.2f} | {run.open / run.probe_s:.1f} | {rss} | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--silent", type=int, default=60)
    parser.add_argument("--banner", type=int, default=120)
    parser.add_argument("--http", type=int, default=120)
    parser.add_argument("--network", default="127.0.0.0/26")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    targets = parse_targets([args.network])
    if not all(target.network.is_loopback for target in targets):
        sys.exit("--network must be within 127.0.0.0/8: this benchmark scans only loopback")
    config = ScanConfig(timeout=args.timeout, probe_deadline=max(60.0, args.timeout * 20))

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    listener = context.Process(
        target=serve_listeners, args=((args.silent, args.banner, args.http), send), daemon=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="perisai-bench-scan-cluster-"))
    lab = Lab(workdir / "lab", services=CORE_SERVICES)
    listener.start()
    try:
        listener_ports: list[int] = receive.recv()
        print("bringing up the lab…", file=sys.stderr)
        instances = lab.up()
        lab_ports = [port for instance in instances for port in scan_ports(instance)]
        ports = sorted({*listener_ports, *lab_ports})
        print(f"local scan of {args.network}, {len(ports)} ports…", file=sys.stderr)
        scanner = Scanner(config)
        runs = [timed("local", lambda clock: _local(scanner, clock, targets, ports))]
        for workers in (1, 2):
            print(f"cluster scan, {workers} worker(s)…", file=sys.stderr)
            runs.append(on_cluster(workers, args.threads, targets, ports, config))
    finally:
        lab.down()
        listener.terminate()
        listener.join(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(runs, args.threads, len(listener_ports), len(instances)))
    if any(run.findings != runs[0].findings for run in runs):
        sys.exit("the modes reported different findings")


def _local(
    scanner: Scanner, clock: Clock, targets: list[TargetSpec], ports: list[int]
) -> ScanReport:
    scanner.progress = clock
    return asyncio.run(scanner.scan(targets, ports))


if __name__ == "__main__":
    main()
