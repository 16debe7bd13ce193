"""The one CPU counter: affinity mask capped by a cgroup v2 or v1 quota."""

import os

import pytest

from lightmycells import cpus
from lightmycells.engine import runtime
from lightmycells.eval import cli

AFFINITY = len(os.sched_getaffinity(0))


def write(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files,quota", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
    ({"cpu.max": "garbage"}, None),
])
def test_cgroup_quota_v2_and_v1(tmp_path, files, quota):
    for name, text in files.items():
        write(tmp_path, name, text)
    assert cpus.cgroup_quota(tmp_path) == quota


def test_a_quota_caps_the_affinity_mask_never_below_one(tmp_path):
    write(tmp_path, "cpu.max", "50000 100000")  # half a CPU
    assert cpus.available_cpus(tmp_path) == 1
    write(tmp_path, "cpu.max", f"{(AFFINITY + 3) * 100000} 100000")  # more than we have
    assert cpus.available_cpus(tmp_path) == AFFINITY
    assert cpus.available_cpus(tmp_path / "none") == AFFINITY


def test_inference_threads_and_evaluation_jobs_count_with_the_same_function():
    assert runtime.available_cpus is cpus.available_cpus
    assert cli.available_cpus is cpus.available_cpus
