"""Shared set-up for the engine benchmarks: a shipped-size RUNet as ONNX, weights, images.

The model is the training pipeline's own RUNet (random weights: speed and memory do not
depend on them) exported the way ``lightmycells.export`` does, with dynamic batch and
spatial axes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from scipy import ndimage

from lightmycells.train.models.runet import RUNet
from tests import onnx_models

PATCH, OVERLAP = 512, 0.25
DEPTH, WIDTH = 4, 16


def runet_onnx(out_channels: int = 1, depth: int = DEPTH, width: int = WIDTH,
               seed: int = 0) -> onnx.ModelProto:
    """RUNet(depth, width) with random weights as an ONNX model with dynamic axes."""
    torch.manual_seed(seed)
    model = RUNet(out_channels, depth=depth, width=width, blocks=1, norm="batch").eval()
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(model, (torch.zeros(1, 1, 256, 256),), buffer, dynamo=False,
                      input_names=["input"], output_names=["output"], opset_version=17,
                      dynamic_axes={"input": dynamic, "output": dynamic})
    return onnx.load_from_string(buffer.getvalue())


def write_runet_weights(folder: Path, organelles: Sequence[str] = ("nucleus",),
                        separate: bool = False) -> Path:
    """Weights folder: one model for ``organelles`` (or one model per organelle)."""
    if not separate:
        return onnx_models.write_weights(folder, runet_onnx(len(organelles)), name="runet",
                                         organelles=list(organelles), patch=PATCH,
                                         overlap=OVERLAP)
    entries = [onnx_models.model_entry(folder, organelle, runet_onnx(1, seed=i),
                                       organelles=[organelle], patch=PATCH, overlap=OVERLAP)
               for i, organelle in enumerate(organelles)]
    return onnx_models.write_manifest(folder, entries)


def cell_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A uint16 image with blob-like structure at several scales (content for correlation)."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(8, shape[0] // 8), max(8, shape[1] // 8)), dtype=np.float32)
    coarse = ndimage.zoom(ndimage.gaussian_filter(small, 2), 8, order=1)[: shape[0], : shape[1]]
    fine = rng.random(shape, dtype=np.float32)
    image = 2000 + 3000 * coarse + 300 * ndimage.gaussian_filter(fine, 1.5)
    return image.astype(np.uint16)


def timed(fn: Callable[[], object], clock: str = "wall") -> tuple[float, object]:
    """Seconds one call takes (``"wall"`` or process ``"cpu"`` time) and its result."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    start = now()
    result = fn()
    return now() - start, result


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (float64)."""
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def load_line() -> str:
    """The 1-minute load average and CPU count, to note the contention next to figures."""
    import os
    return f"load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} CPUs"
