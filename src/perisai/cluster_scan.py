"""A scan whose discovery and probes run as Dask tasks (``perisai scan --cluster ADDRESS``).

The coordinator (this process) keeps everything a local scan keeps (the report, the store,
progress) and hands the network work to the workers:

- discovery: the address:port pairs are cut from a lazy iterator into chunks of
  :data:`DISCOVERY_CHUNK`, one task each, so a /8 is never listed in memory;
- probes: each open (host, port) is one task, examined by the local scan's own code
  (:mod:`perisai.scan_tasks`) and returned masked;
- at most :data:`IN_FLIGHT_PER_THREAD` tasks per worker thread are in flight at once, so the
  coordinator's memory follows the open ports found, not the addresses scanned;
- a worker that dies mid-scan loses nothing: the scheduler runs its tasks elsewhere, and a
  task that raised is retried (:data:`RETRIES`); probes are read-only, so a rerun is safe.

The results are put back in the local scan's order and assembled by
:meth:`perisai.scanner.Scanner.report`, so both scans report the same findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from perisai.cluster import ClusterError
from perisai.findings import ScanReport
from perisai.probes import ScanConfig
from perisai.progress import NoProgress, Progress
from perisai.scan_tasks import discover_chunk, examine_endpoint
from perisai.scanner import Endpoint, Examined, Scanner, endpoints, now, planned
from perisai.targets import TargetSpec

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DISCOVERY_CHUNK",
    "IN_FLIGHT_PER_THREAD",
    "RETRIES",
    "chunks",
    "run_bounded",
    "scan_on_cluster",
]

DISCOVERY_CHUNK = 2048  # address:port pairs per discovery task (a few seconds of work)
IN_FLIGHT_PER_THREAD = 2  # tasks submitted per worker thread: one running, one queued
RETRIES = 2  # a task that raised runs again, twice at most (a dead worker's always do)

In = TypeVar("In")
Out = TypeVar("Out")


def chunks(items: Iterable[In], size: int) -> Iterator[list[In]]:
    """``items`` in lists of ``size`` (the last one shorter), taken lazily."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def scan_on_cluster(
    client: Client,
    targets: Sequence[TargetSpec],
    ports: Sequence[int] | None = None,
    config: ScanConfig | None = None,
    progress: Progress | None = None,
) -> ScanReport:
    """Scan ``targets`` on the workers of ``client``'s cluster: the report a local scan of the
    same targets gives. Raises :class:`ClusterError` when a task fails for good."""
    progress = progress or NoProgress()
    scanner = Scanner(config, progress=progress)  # its rules and its assembly, here
    config = scanner.config
    started = now()
    port_list = tuple(ports) if ports else scanner.default_ports
    total = planned(targets, port_list)
    threads = sum(client.nthreads().values())  # type: ignore[no-untyped-call]
    in_flight = max(4, IN_FLIGHT_PER_THREAD * threads)

    progress.phase("discover", total)
    found: list[Endpoint] = []
    for chunk, open_ones in run_bounded(
        client, discover_chunk, config, chunks(endpoints(targets, port_list), DISCOVERY_CHUNK),
        in_flight,
    ):  # fmt: skip
        found.extend(open_ones)
        progress.advance(len(chunk))
    found.sort(key=lambda e: (e.host, e.port))  # the order a local scan reports in

    progress.phase("probe", len(found))
    examined: dict[Endpoint, Examined] = {}
    for endpoint, result in run_bounded(client, examine_endpoint, config, iter(found), in_flight):
        examined[endpoint] = result
        progress.advance()
    results = [examined[endpoint] for endpoint in found]
    return scanner.report(targets, port_list, total, results, started)


def run_bounded(
    client: Client,
    task: Callable[[ScanConfig, In], Out],
    config: ScanConfig,
    items: Iterator[In],
    in_flight: int,
) -> Iterator[tuple[In, Out]]:
    """``task(config, item)`` for every item, as each finishes; at most ``in_flight``
    submitted at once, the next item taken from ``items`` only when one is done."""
    from distributed import as_completed

    pending: dict[object, In] = {}  # by task key

    def submit() -> bool:
        item = next(items, None)
        if item is None:
            return False
        future = client.submit(task, config, item, retries=RETRIES, pure=False)
        pending[future.key] = item
        batch.add(future)  # type: ignore[no-untyped-call]
        return True

    batch = as_completed(loop=client.loop)  # type: ignore[no-untyped-call]
    while len(pending) < in_flight and submit():
        pass
    for future in batch:
        item = pending.pop(future.key)
        try:
            result = future.result()
        except Exception as error:  # raised in a worker: any type, said in one line
            first = str(error).splitlines()[0] if str(error) else ""
            raise ClusterError(
                f"a scan task failed on the cluster: {type(error).__name__}: {first}"
            ) from None
        submit()
        yield item, result
