"""``classify --cluster ADDRESS``: the parts ``--jobs`` cuts, classified by a Dask cluster's
workers, their profiles merged in file order into what one process finds.

The workers read the files themselves, at the path this machine lists them under: the files
must be on storage every worker mounts at the same path (an NFS or cluster file system). A
worker that does not find one says so, and the run stops with that one line rather than
reporting a file as empty. Parts are those of :mod:`perisai.classify.parallel`: plain
JSON-lines and text files cut at line boundaries, a ``.gz`` or CSV file whole. A worker that
dies has its tasks rerun elsewhere by the scheduler; each part's result is kept once, so the
merge is complete and exact either way.

Dask is imported only when a cluster is used: this module loads without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perisai.classify.engine import Classifier
from perisai.classify.files import FileProfile
from perisai.classify.parallel import Part, merge_in_order, part_mb, part_size, plan, profile_part
from perisai.cluster import ClusterError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["RETRIES", "Absent", "classify_on_cluster", "classify_part"]

# A task that raises is tried this many more times (a file server's hiccup); a worker that
# dies is the scheduler's business: its tasks go elsewhere, up to its allowed-failures.
RETRIES = 2
WORKER_WAIT_S = 10.0  # how long a scheduler with no worker yet is given to get one

# One classifier per worker thread: a hyperscan scratch space serves one scan at a time, so
# threads sharing one fail (ScratchInUseError); with --nthreads 1, one per worker process.
_local = threading.local()


@dataclass(frozen=True)
class Absent:
    """A worker's answer for a part whose file is not at its path there."""

    worker: str


def classify_part(part: Part, regions: tuple[str, ...]) -> FileProfile | Absent:
    """One part's profile, on a worker; the classifier is built once per worker thread (once
    per worker process with ``--nthreads 1``), not per task."""
    if not part.path.exists():
        from distributed import get_worker

        return Absent(get_worker().address)
    classifiers: dict[tuple[str, ...], Classifier] | None = getattr(_local, "classifiers", None)
    if classifiers is None:
        classifiers = _local.classifiers = {}
    if regions not in classifiers:  # not classifier_for's: that one is shared by threads
        classifiers[regions] = Classifier(regions)
    return profile_part(part, classifiers[regions])


def classify_on_cluster(
    files: Sequence[Path],
    regions: tuple[str, ...],
    client: Client,
    on_bytes: Callable[[float], None] | None = None,
    part_bytes: int | None = None,
) -> list[FileProfile]:
    """Each file's profile, as :func:`~perisai.classify.files.profile_file` gives it, from
    ``client``'s workers; ``on_bytes`` gets each finished part's size in megabytes, as the
    parts finish on any worker. ``part_bytes`` (default: :func:`part_size` over the cluster's
    worker threads) is the size ranges are cut at. Raises :class:`ClusterError`."""
    from distributed import as_completed

    threads = _worker_threads(client)
    # the workers' paths are this machine's absolute ones; the report keeps the names given
    parts = plan([path.absolute() for path in files], part_bytes or part_size(files, threads))
    futures = client.map(classify_part, parts, regions=regions, retries=RETRIES, pure=False)
    owner = dict(zip(futures, parts, strict=True))
    done: dict[Part, FileProfile] = {}
    try:
        for future in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
            part = owner[future]
            result = _result(future, part)
            if isinstance(result, Absent):
                raise ClusterError(
                    f"{part.path} is not on Dask worker {result.worker}: --cluster reads every "
                    "file on the workers, so it must be at the same path on every worker "
                    "(shared storage)"
                )
            done[part] = result
            if on_bytes is not None:
                on_bytes(part_mb(part))
    finally:
        client.cancel(futures)  # type: ignore[no-untyped-call]  # none left behind a stop
    return merge_in_order(files, parts, done)


def _worker_threads(client: Client) -> int:
    """The threads of the cluster's workers, waiting a little for a first one to join."""
    threads = sum(client.nthreads().values())  # type: ignore[no-untyped-call]
    if threads:
        return threads
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(
            "the Dask scheduler has no workers: start some with `dask worker ADDRESS`"
        ) from None
    return max(1, sum(client.nthreads().values()))  # type: ignore[no-untyped-call]


def _result(future: Future[FileProfile | Absent], part: Part) -> FileProfile | Absent:
    """The task's result, or what went wrong as a :class:`ClusterError`."""
    from distributed import KilledWorker

    try:
        result = future.result()
    except KilledWorker:
        raise ClusterError(
            f"Dask workers kept dying on {part.path} (bytes {part.start}-{part.end or 'end'}):"
            " see the workers' logs (memory?)"
        ) from None
    except ModuleNotFoundError as error:
        raise ClusterError(
            f"a Dask worker cannot import {error.name}: install perisai on every worker"
        ) from None
    except (CancelledError, OSError, TimeoutError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ClusterError(f"lost the Dask cluster while classifying: {reason}") from None
    assert isinstance(result, FileProfile | Absent)
    return result
