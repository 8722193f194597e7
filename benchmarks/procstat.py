"""Peak memory of a child process, measured from outside while it runs (Linux ``/proc``).

``wait4``'s ``ru_maxrss`` cannot be used for this: Linux carries the parent's high-water mark
into a forked child, so a child started from a big process reports at least the parent's size.
``VmHWM`` in ``/proc/PID/status`` belongs to the child's own address space since its exec.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set so far, in KiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def wait_with_peak_rss(
    process: subprocess.Popen[bytes], give_up_at: float, interval: float = 0.05
) -> tuple[bool, float]:
    """Wait for ``process``, polling its peak RSS; kill it at ``give_up_at`` (monotonic).

    Returns whether it ended by itself, and its peak RSS in MB as last seen.
    """
    peak = 0
    while process.poll() is None:
        peak = max(peak, vm_hwm_kb(process.pid))
        if time.monotonic() >= give_up_at:
            process.kill()
            process.wait()
            return False, peak / 1024
        time.sleep(interval)
    return True, peak / 1024
