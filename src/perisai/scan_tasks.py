"""The scan's Dask tasks, as they run inside a worker: discover a chunk, examine one endpoint.

Each worker process runs one asyncio loop in a thread of its own (:class:`WorkerLoop`); its
Dask threads hand coroutines to it and wait, each with a deadline. One loop per worker, not
one per task: the probes and the classifier they share (a compiled hyperscan database, its
caches) are built once per worker and only ever used from that loop's thread, as in a local
scan, while the worker's ``--nthreads`` tasks are in flight on it together. A task that
overruns its deadline gives its Dask thread back at once (its coroutine is cancelled), so a
hanging target cannot hold a worker. What leaves the worker is masked already: personal data
never crosses the network between worker and coordinator unmasked.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from perisai.assets import PortSeen
from perisai.classify.profile import classifier_for
from perisai.evidence import safe_findings
from perisai.findings import Target
from perisai.probes import ScanConfig
from perisai.scanner import Endpoint, Examined, Scanner, incomplete

__all__ = [
    "ScanTaskError",
    "WorkerLoop",
    "discover_chunk",
    "discovery_deadline",
    "examine_deadline",
    "examine_endpoint",
    "worker_loop",
]

T = TypeVar("T")
MAX_SCANNERS = 8  # configurations kept per worker (a scan uses two: discovery's and the probes')


class ScanTaskError(Exception):
    """A task could not do its work (Dask retries it, then the coordinator reports it)."""


class WorkerLoop:
    """An asyncio loop on its own daemon thread, and the scanners that run on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="perisai-scan-loop", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._scanners: dict[ScanConfig, Scanner] = {}

    def scanner(self, config: ScanConfig) -> Scanner:
        """The scanner for ``config``, built on first use (its probes, and the classifier
        that masks their findings, are built once: not by each thread that needs them)."""
        with self._lock:
            if config not in self._scanners:
                if len(self._scanners) >= MAX_SCANNERS:
                    self._scanners.clear()
                self._scanners[config] = Scanner(config)
                classifier_for(config.regions)
            return self._scanners[config]

    def run(self, work: Coroutine[Any, Any, T], deadline: float) -> T | None:
        """``work``'s result, or ``None`` when it is not done within ``deadline`` seconds
        (it is cancelled then, and this thread is free again)."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        try:
            return future.result(deadline)
        except TimeoutError:
            future.cancel()
            return None

    def close(self) -> None:
        """Stop the loop and its thread (a worker's loop simply ends with its process)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


_loop: WorkerLoop | None = None
_loop_lock = threading.Lock()


def worker_loop() -> WorkerLoop:
    """This process's loop, started by the first task that needs it."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = WorkerLoop()
        return _loop


def discovery_deadline(config: ScanConfig, count: int) -> float:
    """Seconds a chunk of ``count`` endpoints may take: each connection attempt is bounded by
    ``timeout`` (and a second to close), ``concurrency`` at a time; twice that, and 30 s."""
    rounds = math.ceil(count / max(1, config.concurrency))
    return 2 * rounds * (config.timeout + 1.0) + 30.0


def examine_deadline(config: ScanConfig) -> float:
    """Seconds one endpoint may take: the probe's own deadline (fingerprints included), the
    banner and HTTP questions asked of a port no probe knows, and a margin; a backstop for
    a probe that does not keep its own bounds."""
    return config.probe_deadline + 4 * config.timeout + 10.0


def discover_chunk(config: ScanConfig, chunk: Sequence[Endpoint]) -> list[Endpoint]:
    """The open endpoints of ``chunk``. ``concurrency`` bounds the connections in flight in
    this worker, shared by its threads, so each chunk gets its share."""
    share = replace(config, concurrency=max(1, config.concurrency // _worker_threads()))
    loop = worker_loop()
    found = loop.run(
        loop.scanner(share).discover(iter(chunk)), discovery_deadline(share, len(chunk))
    )
    if found is None:
        raise ScanTaskError(f"discovery of {len(chunk)} endpoints did not finish in time")
    return found


def examine_endpoint(config: ScanConfig, endpoint: Endpoint) -> Examined:
    """What one open endpoint holds, its findings masked; an endpoint that overruns
    :func:`examine_deadline` is one ``scan.incomplete`` finding."""
    loop = worker_loop()
    deadline = examine_deadline(config)
    examined = loop.run(_masked(loop.scanner(config), endpoint), deadline)
    if examined is None:
        target = Target(endpoint.host, endpoint.port, "unknown")
        why = f"no answer was complete within the task's deadline of {deadline:.0f}s; stopped"
        examined = [incomplete(target, why)], PortSeen(endpoint.host, endpoint.port, "unknown")
    return examined


async def _masked(scanner: Scanner, endpoint: Endpoint) -> Examined:
    """:meth:`Scanner.examine`, its findings masked on the loop's thread (the only thread
    that uses this worker's classifier)."""
    findings, seen = await scanner.examine(endpoint)
    return safe_findings(findings, scanner.config.regions), seen


def _worker_threads() -> int:
    """The threads of the Dask worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return max(1, get_worker().state.nthreads)
    except (ImportError, ValueError):
        return 1
