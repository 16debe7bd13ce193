"""Tiny real ONNX models for tests, built with ``onnx.helper`` (no torch), and their manifests.

Every model takes ``input`` of shape ``(B, 1, H, W)`` float32 with batch and spatial axes
dynamic and returns ``output`` of shape ``(B, C, H, W)``, as the project's model convention
(docs/ARCHITECTURE.md) asks. ``write_weights`` saves models into a folder and writes a valid
``manifest.json`` for them (sha256 computed from the written files).

Models
------
identity_model(channels)        output[:, c] == input[:, 0] for every channel c
affine_model(scales, offsets)   output[:, c] == scales[c] * input + offsets[c]
conv_model(channels, kernel=5)  one zero-padded k×k convolution (local, not equivariant)
equivariant_model(channels)     isotropic 5×5 conv, ReLU, isotropic 3×3 conv: commutes
                                exactly with the 8 dihedral transforms (any H, W)
unet_model(channels, depth=2)   a tiny UNet; H and W must be multiples of 2**depth
batch_mean_model(channels)      output[b, c] == input[b] + mean over the batch of input:
                                reveals which tiles shared a model call
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime release that supports opset 17
INPUT, OUTPUT = "input", "output"
ALL_ORGANELLES = ("nucleus", "mitochondria", "tubulin", "actin")
DEFAULT_NORM = {"kind": "percentile", "low": 2.0, "high": 99.8}


def _model(
    nodes: list, initializers: list, channels: int, elem: int = TensorProto.FLOAT
) -> onnx.ModelProto:
    """Wrap nodes into a checked model with dynamic (B,1,H,W) → (B,C,H,W) I/O."""
    x = helper.make_tensor_value_info(INPUT, elem, ["B", 1, "H", "W"])
    y = helper.make_tensor_value_info(OUTPUT, elem, ["B", channels, "H", "W"])
    graph = helper.make_graph(nodes, "test_model", [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def identity_model(channels: int = 1, *, fp16: bool = False) -> onnx.ModelProto:
    """Copy the input into ``channels`` output channels (float16 I/O when ``fp16``)."""
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    if channels == 1:
        nodes = [helper.make_node("Identity", [INPUT], [OUTPUT])]
    else:
        nodes = [helper.make_node("Concat", [INPUT] * channels, [OUTPUT], axis=1)]
    return _model(nodes, [], channels, elem)


def affine_model(scales: Sequence[float], offsets: Sequence[float]) -> onnx.ModelProto:
    """``output[:, c] = scales[c] * input + offsets[c]``: channels tell apart which is which."""
    c = len(scales)
    weight = np.asarray(scales, np.float32).reshape(c, 1, 1, 1)
    bias = np.asarray(offsets, np.float32).reshape(c)
    nodes = [helper.make_node("Conv", [INPUT, "w", "b"], [OUTPUT], kernel_shape=[1, 1])]
    return _model(nodes, [_init("w", weight), _init("b", bias)], c)


def conv_model(channels: int = 1, *, kernel: int = 5, seed: int = 0) -> onnx.ModelProto:
    """One zero-padded ``kernel``×``kernel`` convolution with random weights and bias."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 1 / kernel, (channels, 1, kernel, kernel)).astype(np.float32)
    bias = rng.normal(0, 0.1, channels).astype(np.float32)
    pad = kernel // 2
    nodes = [helper.make_node("Conv", [INPUT, "w", "b"], [OUTPUT],
                              kernel_shape=[kernel, kernel], pads=[pad] * 4)]
    return _model(nodes, [_init("w", weight), _init("b", bias)], channels)


def batch_mean_model(channels: int = 1) -> onnx.ModelProto:
    """``output[b, c] = input[b, 0] + mean_b' input[b', 0]``: a call's tiles leave a trace.

    With one tile per call the output is ``2 · input``; with several, each tile also carries
    the mean of the tiles it was batched with, so the grouping of tiles into calls shows.
    """
    nodes = [
        helper.make_node("ReduceMean", [INPUT], ["mean"], axes=[0], keepdims=1),
        helper.make_node("Add", [INPUT, "mean"], ["sum"]),
        helper.make_node("Concat", ["sum"] * channels, [OUTPUT], axis=1) if channels > 1
        else helper.make_node("Identity", ["sum"], [OUTPUT]),
    ]
    return _model(nodes, [], channels)


def _isotropic_kernels(n_out: int, n_in: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Kernels whose weights depend only on the distance to the centre (D4-symmetric)."""
    r = np.arange(size) - size // 2
    dist2 = r[:, None] ** 2 + r[None, :] ** 2
    rings = np.unique(dist2)
    values = rng.normal(0, 0.3, (n_out, n_in, rings.size))
    return values[:, :, np.searchsorted(rings, dist2)].astype(np.float32)


def equivariant_model(channels: int = 1, *, hidden: int = 4, seed: int = 0) -> onnx.ModelProto:
    """Isotropic 5×5 conv → ReLU → isotropic 3×3 conv; rotating the input rotates the output."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w1", _isotropic_kernels(hidden, 1, 5, rng)),
        _init("b1", rng.normal(0, 0.1, hidden).astype(np.float32)),
        _init("w2", _isotropic_kernels(channels, hidden, 3, rng)),
        _init("b2", rng.normal(0, 0.1, channels).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", [INPUT, "w1", "b1"], ["h1"], kernel_shape=[5, 5], pads=[2] * 4),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2", "b2"], [OUTPUT], kernel_shape=[3, 3], pads=[1] * 4),
    ]
    return _model(nodes, inits, channels)


def unet_model(
    channels: int = 1, *, depth: int = 2, width: int = 4, seed: int = 0
) -> onnx.ModelProto:
    """A tiny UNet (3×3 convs, 2×2 max-pool, 2×2 stride-2 transposed conv, skip concat).

    Spatial sizes must be multiples of ``2**depth``; other sizes fail inside ONNX Runtime
    (the skip concatenation sees mismatched shapes), as a real UNet export would.
    """
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []

    def conv(src: str, n_in: int, n_out: int, name: str, k: int = 3) -> str:
        inits.append(_init(f"{name}_w", rng.normal(0, (2 / (n_in * k * k)) ** 0.5,
                                                    (n_out, n_in, k, k)).astype(np.float32)))
        inits.append(_init(f"{name}_b", np.zeros(n_out, np.float32)))
        nodes.append(helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [f"{name}_c"],
                                      kernel_shape=[k, k], pads=[k // 2] * 4))
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [name]))
        return name

    skips = []
    x, n = conv(INPUT, 1, width, "enc0"), width
    for level in range(1, depth + 1):
        skips.append((x, n))
        nodes.append(helper.make_node("MaxPool", [x], [f"pool{level}"], kernel_shape=[2, 2],
                                      strides=[2, 2]))
        x, n = conv(f"pool{level}", n, 2 * n, f"enc{level}"), 2 * n
    for level in range(depth, 0, -1):
        skip, n_skip = skips[level - 1]
        up_w = rng.normal(0, 0.3, (n, n_skip, 2, 2)).astype(np.float32)
        inits.append(_init(f"up{level}_w", up_w))
        nodes.append(helper.make_node("ConvTranspose", [x, f"up{level}_w"], [f"up{level}"],
                                      kernel_shape=[2, 2], strides=[2, 2]))
        nodes.append(helper.make_node("Concat", [f"up{level}", skip], [f"cat{level}"], axis=1))
        x, n = conv(f"cat{level}", 2 * n_skip, n_skip, f"dec{level}"), n_skip
    inits.append(_init("head_w", rng.normal(0, 0.5, (channels, n, 1, 1)).astype(np.float32)))
    inits.append(_init("head_b", np.zeros(channels, np.float32)))
    nodes.append(helper.make_node("Conv", [x, "head_w", "head_b"], [OUTPUT], kernel_shape=[1, 1]))
    return _model(nodes, inits, channels)


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file (computed here independently of the code under test)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_entry(
    folder: str | Path,
    name: str,
    model: onnx.ModelProto,
    *,
    organelles: Sequence[str] = ALL_ORGANELLES,
    modalities: Sequence[str] = ("*",),
    patch: int = 256,
    overlap: float = 0.25,
    pixel_size_um: float | None = None,
    input_norm: dict[str, Any] | None = None,
    fp16_model: onnx.ModelProto | None = None,
) -> dict[str, Any]:
    """Save ``model`` as ``<folder>/<name>.onnx`` and return its manifest entry.

    ``fp16_model`` (if given) is saved as ``<name>.fp16.onnx`` and named in the entry's
    ``fp16`` key.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    onnx.save(model, path)
    entry: dict[str, Any] = {
        "name": name, "file": path.name, "sha256": sha256(path),
        "organelles": list(organelles), "modalities": list(modalities),
        "patch": patch, "overlap": overlap, "pixel_size_um": pixel_size_um,
        "input_norm": dict(DEFAULT_NORM if input_norm is None else input_norm),
    }
    if fp16_model is not None:
        fp16_path = folder / f"{name}.fp16.onnx"
        onnx.save(fp16_model, fp16_path)
        entry["fp16"] = {"file": fp16_path.name, "sha256": sha256(fp16_path)}
    return entry


def write_manifest(folder: str | Path, entries: Sequence[dict[str, Any]]) -> Path:
    """Write ``<folder>/manifest.json`` (format 1) listing ``entries``; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": 1, "models": list(entries)}
    (folder / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    return folder


def write_weights(folder: str | Path, model: onnx.ModelProto | None = None, **entry: Any) -> Path:
    """One model serving all four organelles on every modality (``"*"``): the common case.

    ``model`` defaults to a 4-channel identity; keyword arguments go to :func:`model_entry`.
    Returns the weights folder (pass it to ``manifest.load``).
    """
    organelles = entry.pop("organelles", ALL_ORGANELLES)
    model = identity_model(len(organelles)) if model is None else model
    name = entry.pop("name", "all")
    entries = [model_entry(folder, name, model, organelles=organelles, **entry)]
    return write_manifest(folder, entries)


def write_routed_weights(folder: str | Path) -> Path:
    """Several models whose outputs reveal which model served which route.

    - ``nuc-bf-pc``: nucleus on BF and PC, output = 1·x + 10
    - ``nuc-mito-any``: nucleus and mitochondria on ``*``, output = 2·x + 20, 3·x + 30
    - ``tub-act-any``: tubulin and actin on ``*``, output = 4·x + 40, 5·x + 50

    So (nucleus, DIC) falls back to ``nuc-mito-any``, (nucleus, BF) takes ``nuc-bf-pc``.
    """
    entries = [
        model_entry(folder, "nuc-bf-pc", affine_model([1], [10]), organelles=["nucleus"],
                    modalities=["BF", "PC"]),
        model_entry(folder, "nuc-mito-any", affine_model([2, 3], [20, 30]),
                    organelles=["nucleus", "mitochondria"]),
        model_entry(folder, "tub-act-any", affine_model([4, 5], [40, 50]),
                    organelles=["tubulin", "actin"]),
    ]
    return write_manifest(folder, entries)
