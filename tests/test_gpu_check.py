"""The GPU check's CPU run (what CI can do): it finishes, measures its CPU parts, and says
clearly which GPU parts it skipped and why."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # ~15 s of CPU: sessions for four models, a few torch steps


def test_quick_cpu_run_reports_what_it_measured_and_what_it_skipped(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["gpu"] is False and report["quick"] is True
    assert report["errors"] == {} and report["checks"] == {}  # no GPU: nothing to compare
    skipped = report["skipped"]
    for item in ("cuda_session", "parity", "end_to_end:cuda", "iobinding:cuda",
                 "cudnn_search", "gpu_memory"):
        assert skipped[item], item  # each with its reason
        assert f"SKIPPED {item}: {skipped[item]}" in done.stdout
    assert "no usable CUDA" in skipped["cuda_session"]
    results = report["results"]
    # the CPU parts ran: a CPU reference per test input and the simulated image
    inputs = sorted(p.name for p in (REPO / "test/input").rglob("*.tif*"))[:1]
    assert set(results["parity"]) == {*inputs, "simulated_256_BF.ome.tiff", "seconds"}
    assert all(row["cpu_s"] > 0 for name, row in results["parity"].items() if name != "seconds")
    assert results["end_to_end"]["device"] == "cpu"
    assert results["end_to_end"]["fp32_batch_auto(4)"]["s_per_image"] > 0
    assert results["iobinding"]["plain"]["s_per_batch"] > 0
    assert results["iobinding"]["bound"]["s_per_batch"] > 0
    training = results.get("training")
    if training is not None:  # torch installed (dev): a few CPU steps, no AMP
        assert training["device"] == "cpu" and training["steps_per_s"] > 0
        assert "training:cuda" in skipped
    else:
        assert "torch" in skipped["training"]
    # every item of the issue is either measured or listed as skipped
    for item in ("cuda_session", "parity", "end_to_end", "iobinding", "cudnn_search",
                 "training", "gpu_memory"):
        assert item in results or item in skipped, item


def test_a_gpu_that_cuda_cannot_use_fails_the_check(tmp_path):
    """nvidia-smi names a GPU (a stand-in script here), but no CUDA session runs: exit 1."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'NVIDIA Stand-in, 580.65, 16384 MiB'\n")
    fake.chmod(0o755)
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--quick", "--budget", "0",
         "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO),
             "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(out.read_text())
    check = report["checks"]["cuda_available"]
    assert check["pass"] is False and "NVIDIA Stand-in" in check["detail"]
    assert "FAIL cuda_available" in done.stdout
    assert report["nvidia_tf32_override"] == "0"
