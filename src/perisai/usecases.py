"""What each command does, as library calls: scan and save, show a saved scan, classify files.

Each returns the report together with what a reader needs beside it (the change since the
previous scan of the same targets, their history from the findings store), so the CLI only
parses options, calls one of these and writes the result, and a program gets the same
results without the CLI::

    from perisai.usecases import saved_scan
    outcome = saved_scan("perisai.db", diff=True)
    if outcome.fails(Severity.HIGH):
        ...

Errors a user can fix are :class:`UseCaseError` (and :class:`perisai.targets.TargetError`
for a bad target), each with a one-line message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perisai.classify.files import ClassifyReport, FileProfile, iter_files, profile_file
from perisai.classify.on_cluster import classify_on_cluster
from perisai.classify.parallel import classify_in_parallel
from perisai.classify.profile import classifier_for
from perisai.cluster import ClusterError, connect
from perisai.findings import Finding, ScanDiff, ScanReport, Severity
from perisai.probes.interface import ScanConfig
from perisai.progress import NoProgress, Progress
from perisai.report.history import ScanHistory, load_history
from perisai.scanner import Scanner
from perisai.store import StoreError, open_store
from perisai.targets import TargetSpec, address_cap, check_scope, parse_targets

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_DB = "perisai.db"

__all__ = [
    "DEFAULT_DB",
    "Outcome",
    "UseCaseError",
    "classify_files",
    "saved_scan",
    "scan_and_save",
]


class UseCaseError(Exception):
    """A request that cannot be carried out; the message says why (and the fix) in one line."""


@dataclass(frozen=True)
class Outcome:
    """A scan report as a command shows it."""

    report: ScanReport
    changes: ScanDiff | None = None  # what is new and resolved since the previous scan
    history: ScanHistory | None = None  # earlier scans of the same targets, for trends
    store_error: str = ""  # why the scan was not saved (the report itself is complete)

    @property
    def judged(self) -> Sequence[Finding]:
        """The findings a ``--fail-on`` threshold judges: only the new ones in a diff (a CI
        gate fails on what a change brought, not on what was already known), else all."""
        return self.changes.new if self.changes is not None else self.report.findings

    def fails(self, threshold: Severity | None) -> bool:
        """Whether a judged finding is at or above ``threshold`` (never, when ``None``)."""
        return threshold is not None and any(f.severity.at_least(threshold) for f in self.judged)


def scan_and_save(
    targets: Sequence[str],
    ports: Sequence[int] | None = None,
    *,
    config: ScanConfig | None = None,
    authorized: bool = False,
    db: str | None = DEFAULT_DB,
    with_history: bool = False,
    with_changes: bool = False,
    progress: Progress | None = None,
    cluster: str | None = None,
) -> Outcome:
    """Scan ``targets`` and save the report in the findings store ``db`` (``None``: do not
    save); with ``with_history``, the earlier scans of the same targets come along; with
    ``with_changes``, what changed since the last of them (a watch's round). With
    ``cluster`` (a Dask scheduler's address), discovery and probes run on its workers
    (:mod:`perisai.cluster_scan`), and with ``authorized`` a range may be up to a /8.

    Raises :class:`perisai.targets.TargetError` for a bad target or one out of scope, and
    :class:`UseCaseError` when the cluster cannot be used. A store that cannot be written
    does not lose the scan: the outcome says why in ``store_error``.
    """
    specs = parse_targets(targets, cap=address_cap(cluster is not None, authorized))
    check_scope(specs, authorized)
    report = _scan(specs, ports, config, progress, cluster)
    if db is None:
        return Outcome(report)
    try:
        with open_store(db) as store:
            store.save(report)
            history = load_history(store, report) if with_history else None
            changes = ScanDiff.between(report, store.previous(report)) if with_changes else None
    except StoreError as error:
        return Outcome(report, store_error=str(error))
    return Outcome(report, changes=changes, history=history)


def _scan(
    specs: Sequence[TargetSpec],
    ports: Sequence[int] | None,
    config: ScanConfig | None,
    progress: Progress | None,
    cluster: str | None,
) -> ScanReport:
    """The scan in this process, or on the workers of the Dask scheduler at ``cluster``."""
    if cluster is None:
        return asyncio.run(Scanner(config, progress=progress).scan(specs, ports))
    from perisai.cluster_scan import scan_on_cluster

    try:
        with connect(cluster) as client:
            return scan_on_cluster(client, specs, ports, config, progress)
    except ClusterError as error:
        raise UseCaseError(str(error)) from None
    except (OSError, TimeoutError) as error:  # the scheduler went away mid-scan
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UseCaseError(f"lost the Dask scheduler at {cluster} mid-scan: {reason}") from None


def saved_scan(
    db: str = DEFAULT_DB,
    scan_id: int | None = None,
    *,
    diff: bool = False,
    with_history: bool = False,
) -> Outcome:
    """A scan from the findings store (``scan_id``, else the latest), with what changed since
    the scan of the same targets before it (``diff``) and their history (``with_history``)."""
    if "://" not in db and not Path(db).exists():
        raise UseCaseError(f"no findings store at {db}: run `perisai scan` first, or pass --db")
    try:
        with open_store(db) as store:
            chosen = store.get(scan_id) if scan_id is not None else store.latest()
            if chosen is None:
                raise UseCaseError(
                    f"no scan {scan_id} in {db}" if scan_id is not None else f"no scans in {db} yet"
                )
            changes = ScanDiff.between(chosen, store.previous(chosen)) if diff else None
            history = load_history(store, chosen) if with_history else None
    except StoreError as error:
        raise UseCaseError(str(error)) from None
    return Outcome(chosen, changes, history)


def classify_files(
    paths: Sequence[Path],
    *,
    regions: tuple[str, ...] = ("MY",),
    progress: Progress | None = None,
    jobs: int = 1,
    cluster: str | Client | None = None,
) -> ClassifyReport:
    """Profile every file under ``paths`` (directories recursively): records, the share with
    personal data, entity counts and masked examples; files that cannot be read are listed
    with the reason, not fatal. ``progress`` advances in megabytes read. ``jobs`` > 1 uses
    that many processes, big files cut at line boundaries (:mod:`perisai.classify.parallel`):
    the same counts as one process. ``cluster`` (a scheduler's address, or a connected
    ``distributed.Client``, which stays open) classifies the same parts on a Dask cluster's
    workers, which read the files at the same paths (:mod:`perisai.classify.on_cluster`)."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise UseCaseError(f"no such file or directory: {missing[0]}")
    if jobs < 1:
        raise UseCaseError("--jobs must be at least 1")
    if cluster is not None and jobs > 1:
        raise UseCaseError(
            "--cluster and --jobs do not go together: the cluster's workers are the processes"
        )
    progress = progress or NoProgress()
    files = list(iter_files(paths))
    sizes = [_size_mb(path) for path in files]
    progress.phase("MB read", max(1, round(sum(sizes))))  # a single big log moves it too
    if cluster is not None:
        return ClassifyReport.of(_on_cluster(files, regions, cluster, progress))
    if jobs > 1:
        try:
            in_parallel = classify_in_parallel(files, regions, jobs, progress.advance)
        except BrokenProcessPool as error:  # a worker killed (memory), or no importable main
            raise UseCaseError(
                f"a --jobs worker process died ({error}); run with --jobs 1"
            ) from None
        return ClassifyReport.of(in_parallel)
    classifier = classifier_for(regions)
    profiles: list[FileProfile] = []
    for path, size in zip(files, sizes, strict=True):
        advance = _bounded_advance(progress, size)
        profiles.append(profile_file(path, classifier, advance))
        advance(None)
    return ClassifyReport.of(profiles)


def _on_cluster(
    files: list[Path], regions: tuple[str, ...], cluster: str | Client, progress: Progress
) -> list[FileProfile]:
    """``files`` classified on the cluster; a client made from an address is closed after."""
    try:
        client = connect(cluster) if isinstance(cluster, str) else cluster
        with client if isinstance(cluster, str) else nullcontext(client):
            return classify_on_cluster(files, regions, client, progress.advance)
    except ClusterError as error:
        raise UseCaseError(str(error)) from None


def _bounded_advance(progress: Progress, size_mb: float) -> Callable[[int | None], None]:
    """A byte callback that moves ``progress`` by at most the file's size (a ``.gz`` holds
    more than it weighs); called with ``None`` at the end, it tops the file up."""
    read = 0.0

    def on_bytes(count: int | None) -> None:
        nonlocal read
        step = size_mb - read if count is None else min(count / 1e6, size_mb - read)
        read += step
        progress.advance(step)

    return on_bytes


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0
