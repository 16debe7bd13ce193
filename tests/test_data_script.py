"""scripts/train_real.sh: shellcheck, and a dry run that prints the plan and the data found."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lightmycells.data.index import build_index, write_index
from lightmycells.simulate.replica import make_replica

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_real.sh"


def test_script_passes_shellcheck_and_is_executable():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert SCRIPT.stat().st_mode & 0o111 and "set -euo pipefail" in SCRIPT.read_text()


def test_dry_run_prints_plan_and_data_without_touching_anything(tmp_path):
    data = tmp_path / "data"
    make_replica(data, studies=[3, 28], max_fovs=1, quirks=())
    write_index(data, build_index(data))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATA": str(data),
           "STORE": str(tmp_path / "store"), "RUN": str(tmp_path / "run"), "GPUS": "4"}
    result = subprocess.run([str(SCRIPT), "--dry-run"], cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    files = len([p for p in data.glob("Study_*/*")])
    assert f"{files} of 56981 listed files present" in out  # organisers' lists, each once
    assert "Study_3: " in out and "Study_28: " in out and "(106 nm)" in out
    assert "index " in out and "usable fields of view" in out
    assert "store " in out and "not written yet" in out
    for stage in ("fetch", "index", "pack", "train", "export", "evaluate"):
        assert f"] {stage}\n" in out
    assert out.count("torchrun --standalone --nproc_per_node 4") == 4  # one per organelle
    assert "--exclude-studies 6 9 20" in out and "estimates" in out
    # one stage only, and a bad argument
    one = subprocess.run([str(SCRIPT), "--dry-run", "export"], cwd=REPO, env=env, text=True,
                         capture_output=True, timeout=120)
    assert "] export\n" in one.stdout and "] train\n" not in one.stdout
    bad = subprocess.run([str(SCRIPT), "fly"], cwd=REPO, env=env, text=True,
                         capture_output=True, timeout=60)
    assert bad.returncode == 2 and "unknown argument: fly" in bad.stderr


def test_dry_run_at_physical_pixel_sizes_packs_one_store_per_size(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATA": str(tmp_path / "data"),
           "STORE": str(tmp_path / "s"), "RUN": str(tmp_path / "run"), "GPUS": "1",
           "PIXEL_UM": "nucleus:0.16 mitochondria:0.1 tubulin:0.1"}
    result = subprocess.run([str(SCRIPT), "--dry-run", "pack", "train"], cwd=REPO, env=env,
                            text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    packs = [line for line in out.splitlines() if "lightmycells.data pack" in line]
    assert len(packs) == 3  # 0.16, 0.1 (shared by two organelles), stored pixels (actin)
    assert f"--out {tmp_path}/s-0.16um" in packs[0] and packs[0].endswith("--pixel-um 0.16")
    assert f"--out {tmp_path}/s-0.1um" in packs[1] and packs[1].endswith("--pixel-um 0.1")
    assert "--pixel-um" not in packs[2]
    trains = [line for line in out.splitlines() if "lightmycells.train" in line]
    for line, um in [(trains[0], "0.16"), (trains[1], "0.1"), (trains[2], "0.1")]:
        assert line.endswith(f"data.resample_um={um}")
        assert f"data.store={tmp_path}/s-{um}um " in line
    assert "resample_um" not in trains[3] and f"data.store={tmp_path}/s " in trains[3]
