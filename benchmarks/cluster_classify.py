"""``perisai classify`` on the service log: one process, ``--jobs 2`` and ``--cluster`` against a
2-worker Dask LocalCluster on 127.0.0.1 (one thread each), in one run; all three must report
the same counts. Target (issue 19): at least 1.8 times one process's speed on 2 cores.

    make bench-classify-cluster   # or: python benchmarks/cluster_classify.py --mb 1024 --write

Each run is the real command in a fresh process, timed from start to exit (its imports and,
for ``--cluster``, connecting included). Peak RSS is read from ``/proc`` while it runs: the
``perisai`` process itself, and separately the largest of its workers (``--jobs``: its child
processes; ``--cluster``: the Dask workers, each asked for its own peak after the run).
``--write`` puts the table into docs/benchmarks.md between the ``benchmark:cluster`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from distributed import Client, LocalCluster  # noqa: E402

from benchmarks.applog import write_app_log  # noqa: E402
from benchmarks.procstat import vm_hwm_kb  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- benchmark:cluster:begin -->", "<!-- benchmark:cluster:end -->"
COUNTED = ("records", "records_with_personal_data", "bytes_read", "entities")
POLL_S = 0.05


@dataclass(frozen=True)
class Run:
    """One timed ``perisai classify``: what it was asked, how long, how big, what it found."""

    label: str
    seconds: float
    rss_mb: float  # the perisai process
    worker_rss_mb: float | None  # its largest worker, where it has workers
    total: dict[str, object]


def service_log(workdir: Path, mb: int) -> Path:
    """The benchmark's log (benchmarks/applog.py), written once and kept for later runs."""
    path = workdir / f"app-{mb}mb.jsonl"  # the name benchmarks/classify.py gives it too
    if not path.exists():
        print(f"writing {path}", file=sys.stderr)
        workdir.mkdir(parents=True, exist_ok=True)
        write_app_log(path, mb * 1_000_000)
    return path


def children(pid: int) -> list[int]:
    """The process's direct children (Linux ``/proc``), none once it is gone."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(child) for child in listed.split()]


def classify(label: str, log: Path, *flags: str) -> Run:
    """Time ``perisai classify LOG --format json FLAGS``, polling its and its children's peak
    RSS; its report's total is kept to compare the runs."""
    command = [sys.executable, "-m", "perisai", "classify", str(log), "--format", "json"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    print(f"running: perisai classify {log.name} {' '.join(flags)}", file=sys.stderr)
    began = time.perf_counter()
    process = subprocess.Popen(
        [*command, *flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    peaks: dict[int, int] = {}
    assert process.stdout is not None
    out = bytearray()
    os.set_blocking(process.stdout.fileno(), False)
    while process.poll() is None:
        for pid in (process.pid, *children(process.pid)):
            peaks[pid] = max(peaks.get(pid, 0), vm_hwm_kb(pid))
        out += process.stdout.read() or b""
        time.sleep(POLL_S)
    seconds = time.perf_counter() - began
    out += process.stdout.read() or b""
    if process.returncode != 0:
        raise SystemExit(f"perisai classify {' '.join(flags)} exited {process.returncode}")
    workers = [kb for pid, kb in peaks.items() if pid != process.pid]
    return Run(
        label,
        seconds,
        peaks.get(process.pid, 0) / 1024,
        max(workers) / 1024 if workers else None,
        json.loads(out)["total"],
    )


def own_peak_kb() -> int:
    """A Dask worker's own peak RSS, in KiB (run on the worker)."""
    return vm_hwm_kb(os.getpid())


def on_cluster(log: Path) -> Run:
    """The same command with ``--cluster`` against a fresh 2-worker LocalCluster on loopback,
    one thread per worker, closed after."""
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # its HTTP server runs anyway: not on 8787
        ) as cluster,
        Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        run = classify("`--cluster` (2 workers)", log, "--cluster", cluster.scheduler_address)
        peaks: dict[str, int] = client.run(own_peak_kb)
    return Run(run.label, run.seconds, run.rss_mb, max(peaks.values()) / 1024, run.total)


def table(runs: list[Run], mb: float) -> list[str]:
    """The runs as markdown rows, speed-up against the first."""
    rows = [
        "| command | seconds | MB/s | speed-up | peak RSS MB, perisai | peak RSS MB, a worker |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        worker = "—" if run.worker_rss_mb is None else f"{run.worker_rss_mb:,.0f}"
        rows.append(
            f"| {run.label} | {run.seconds:,.2f} | {mb / run.seconds:,.2f} | "
            f"{runs[0].seconds / run.seconds:.2f}× | {run.rss_mb:,.0f} | {worker} |"
        )
    return rows


def write(text: str) -> None:
    """``text`` between this benchmark's markers in docs/benchmarks.md."""
    doc = DOCS.read_text(encoding="utf-8")
    head, found, rest = doc.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise SystemExit(f"{DOCS} has no {BEGIN} … {END} section")
    DOCS.write_text(f"{head}{BEGIN}\n\n{text}\n\n{END}{tail}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the service log")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench-data")
    parser.add_argument("--write", action="store_true", help="put the table in the docs")
    args = parser.parse_args()
    log = service_log(args.workdir, args.mb)
    with log.open("rb") as handle:  # into the page cache, so no run pays for the disk
        while handle.read(1 << 24):
            pass
    load_before = os.getloadavg()[0]
    runs = [
        classify("`--jobs 1`", log, "--jobs", "1"),
        classify("`--jobs 2`", log, "--jobs", "2"),
        on_cluster(log),
    ]
    load_after = os.getloadavg()[0]
    totals = [{key: run.total[key] for key in COUNTED} for run in runs]
    if any(total != totals[0] for total in totals):
        print(*(json.dumps(total) for total in totals), sep="\n", file=sys.stderr)
        raise SystemExit("the runs' counts differ")
    mb = log.stat().st_size / 1e6
    records = totals[0]["records"]
    lines = [
        f"`python benchmarks/cluster_classify.py --mb {args.mb}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; {mb:,.1f} MB, {records:,} records, the same counts in "
        f"every run; load average {load_before:.1f} before and {load_after:.1f} after.",
        "",
        *table(runs, mb),
    ]
    print("\n".join(lines))
    if args.write:
        write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
