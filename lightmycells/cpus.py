"""How many CPUs this process may use: the one counter for ORT threads and worker processes.

``os.cpu_count()`` reports the host's cores, also inside a container limited to two; the
affinity mask (``taskset``, ``docker --cpuset-cpus``) and the cgroup CPU quota
(``docker --cpus``) are what the kernel will actually grant.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: Where a container sees its own cgroup.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: cgroup v2 quota file: ``"<quota> <period>"`` in µs, quota ``max`` when unlimited.
_V2_CPU_MAX = "cpu.max"
#: cgroup v1 quota files (µs): quota ``-1`` when unlimited.
_V1_QUOTA, _V1_PERIOD = "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"


def _affinity() -> int:
    """CPUs in this process's affinity mask (all cores where the OS has no masks)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity API
        return os.cpu_count() or 1


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 1.5), or None when there is none or none is readable."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / _V2_CPU_MAX).read_text().split()[:2]
        return None if quota == "max" else float(quota) / float(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = float((root / _V1_QUOTA).read_text())
        return None if quota_us <= 0 else quota_us / float((root / _V1_PERIOD).read_text())
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 or v1 CPU quota.

    A fractional quota rounds down (1.5 CPUs → 1), never below 1.
    """
    count = _affinity()
    quota = cgroup_quota(root)
    if quota is not None:
        count = min(count, int(quota))
    return max(1, count)
