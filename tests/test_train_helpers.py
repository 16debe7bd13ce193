"""Tiny Light My Cells-layout studies for the training tests (no tests in this file).

Inputs are smooth random fields; the nucleus target is a blurred, squared copy of the input
and the mitochondria target a sharper one, so a small model can learn them in a few steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from lightmycells.io import ome
from lightmycells.train.config import TrainConfig, parse_config

MODALITIES = ("BF", "PC")


def make_studies(root: Path, *, studies: int = 2, fovs: int = 3, planes: int = 2,
                 size: tuple[int, int] = (48, 48), seed: int = 0,
                 pixel_um: float = 0.1, modalities: tuple[str, ...] = MODALITIES) -> Path:
    """Write ``studies`` × ``fovs`` fields of view; mitochondria only on even FOV ids.

    Study ``s`` is in ``modalities[(s - 1) % len(modalities)]``.
    """
    rng = np.random.default_rng(seed)
    image_id = 0
    for s in range(1, studies + 1):
        folder = root / f"Study_{s}"
        folder.mkdir(parents=True)
        modality = modalities[(s - 1) % len(modalities)]
        for _ in range(fovs):
            image_id += 1
            base = ndimage.gaussian_filter(rng.random(size), 2.0)
            base = (base - base.min()) / (base.max() - base.min())
            for z in range(planes):
                plane = 1000 + 3000 * base + 20 * z * rng.random(size)
                ome.write(folder / f"image_{image_id}_{modality}_z{z}.ome.tiff",
                          plane.astype(np.uint16), channel=modality,
                          pixel_size_um=(pixel_um, pixel_um))
            nucleus = ndimage.gaussian_filter(base, 1.0) ** 2
            ome.write(folder / f"image_{image_id}_Nucleus.ome.tiff",
                      (60000 * nucleus).astype(np.uint16), channel="Nucleus",
                      pixel_size_um=(pixel_um, pixel_um))
            if image_id % 2 == 0:
                ome.write(folder / f"image_{image_id}_Mitochondria.ome.tiff",
                          (60000 * base**3).astype(np.uint16), channel="Mitochondria",
                          pixel_size_um=(pixel_um, pixel_um))
    (root / "best_z.csv").write_text(
        "name,modality,image_z,best_z\n"
        + "".join(f"image_{i}_BF_z0,BF,0,1\n" for i in range(1, image_id + 1))
    )
    return root


def tiny_config(root: Path, out: Path, **overrides):
    """A config that trains a 4-wide, depth-2 RUNet on 32² patches in a second or two."""
    raw = {
        "out": str(out), "steps": 8, "seed": 1, "device": "cpu", "threads": 1,
        "checkpoint_every": 4, "progress": False,
        "data": {"roots": [str(root)], "organelles": ["nucleus"], "patch": 32,
                 "batch_size": 4, "val_fraction": 0.2, "max_val_images": 2},
        "model": {"depth": 2, "width": 4},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "val": {"every": 4, "tile": 32, "batch_size": 2},
    }
    return with_overrides(raw, **overrides)


def with_overrides(raw: dict, **overrides) -> TrainConfig:
    """``raw`` with ``section__key=value`` overrides applied, validated."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return parse_config(raw)


def torchrun(config: Path, cwd: Path | str, *, processes: int = 2,
             timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m lightmycells.train --config CONFIG`` under torchrun (gloo, one thread each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
         "--nproc_per_node", str(processes), "-m", "lightmycells.train", "--config",
         str(config)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    )
