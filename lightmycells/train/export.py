"""Export a training checkpoint to ONNX, check it, and write its manifest entry.

``python -m lightmycells.export --checkpoint runs/x/best.pt --out weights/`` writes
``<organelles>.onnx`` with dynamic batch and spatial axes, runs ``onnx.checker``, compares
ONNX Runtime with PyTorch on random inputs of two sizes and on real images (the run's
validation planes, or ``--sample`` files), fails when the largest absolute difference exceeds
the tolerance, and adds or replaces the model's entry in ``weights/manifest.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from lightmycells.engine import manifest, normalize
from lightmycells.io import ome
from lightmycells.io.atomic import replacing, write_json, write_text
from lightmycells.io.planes import read_plane
from lightmycells.train import modality as conditioning
from lightmycells.train.config import TrainConfig, ZStack, dump_config
from lightmycells.train.models import build_model
from lightmycells.vocab import MODALITIES, Modality, Organelle

OPSET = 17
TOLERANCE = 1e-4
#: Largest allowed |fp16 ONNX − fp32 PyTorch| (float16 keeps ~3 significant digits).
FP16_TOLERANCE = 0.05
INPUT_NAME = "input"
OUTPUT_NAME = "output"


#: The training config written beside each exported model (``nucleus.train.yaml``).
CONFIG_SUFFIX = ".train.yaml"


def config_beside(onnx_path: Path) -> Path:
    """The training config beside a model: ``x.onnx`` → ``x.train.yaml``."""
    return onnx_path.with_name(onnx_path.stem + CONFIG_SUFFIX)


class ExportError(RuntimeError):
    """The export could not produce a model that matches PyTorch; the message says why."""


@dataclass(frozen=True)
class Loaded:
    """A model rebuilt from a checkpoint, in eval mode, and what the checkpoint recorded."""

    model: torch.nn.Module
    config: TrainConfig
    step: int
    pixel_size_um: float | None
    val_planes: tuple[Path, ...]
    modality_organelles: dict[str, list[str]] | None = None
    """Per modality, the organelles that had training targets (None in older checkpoints)."""


def load_checkpoint(path: str | Path) -> Loaded:
    """Rebuild the model a training checkpoint describes (CPU, eval mode)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ExportError(f"{path}: cannot read checkpoint ({exc})") from None
    config = TrainConfig.model_validate(state["config"])
    if config.pretrain is not None:
        raise ExportError(f"{path}: a pretraining checkpoint ({config.run_kind}); its decoder is "
                          "thrown away: fine-tune a model from it with init_from and export that")
    model = build_model(config.model, len(config.data.organelles))
    model.load_state_dict(state["model"])
    model.eval()
    return Loaded(model, config, int(state["step"]), state.get("pixel_size_um"),
                  tuple(Path(p) for p in state.get("val_planes", ())),
                  state.get("modality_organelles"))


def for_modality(loaded: Loaded, modality: Modality | str) -> Loaded:
    """A modality-conditioned model as the plain model of one modality (code folded in).

    It keeps the organelles that had training targets in that modality (all when the
    checkpoint does not say), and its config names that modality only, so the export's file
    name and manifest entry are the modality's.
    """
    organelles = [str(o) for o in loaded.config.data.organelles]
    trained = (loaded.modality_organelles or {}).get(str(modality), organelles)
    keep = [i for i, o in enumerate(organelles) if o in trained]
    if not keep:
        raise ExportError(f"modality {modality}: no organelle had training targets in it")
    data_cfg = loaded.config.data.model_copy(update={
        "organelles": [Organelle(organelles[i]) for i in keep],
        "modalities": [Modality(modality)]})
    return dataclasses.replace(
        loaded, model=conditioning.FixedModality(loaded.model, modality, keep,
                                                len(organelles)).eval(),
        config=loaded.config.model_copy(update={"data": data_cfg}),
    )


def export_modalities(checkpoint: str | Path) -> list[Modality | None]:
    """The per-modality exports a checkpoint needs.

    Each trained modality of a conditioned model, else ``[None]`` (one plain export).
    """
    config = load_checkpoint(checkpoint).config
    return list(config.data.modalities) if conditioning.conditioned(config) else [None]


def _stem(cfg: TrainConfig) -> str:
    """File stem: the organelles, and the modalities when not all three."""
    stem = "-".join(str(o) for o in cfg.data.organelles)
    if set(cfg.data.modalities) != set(MODALITIES):
        stem += "." + "+".join(str(m) for m in cfg.data.modalities)
    return stem


def export_onnx(model: torch.nn.Module, path: Path, size: int, *,
                static_tile: bool = False) -> Path:
    """Trace ``model`` to ONNX at ``path`` (batch, height and width dynamic) and check it.

    With ``static_tile`` only the batch is dynamic: the graph takes ``size``² tiles, which the
    container then always feeds it (``OnnxModel.fixed_tile``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: "batch"} if static_tile else {0: "batch", 2: "height", 3: "width"}
    with replacing(path) as tmp:
        with warnings.catch_warnings():
            # The torch.export-based exporter needs onnxscript, which is not installed; the
            # TorchScript exporter works offline, and torch warns that it is deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            # reflection padding traces to reversed slices, which the folder leaves unfolded
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                model.eval(), (torch.zeros(1, 1, size, size),), str(tmp), dynamo=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=OPSET,
                dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
                do_constant_folding=True,
            )
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    return path


class HalfPrecision(torch.nn.Module):
    """``model`` in float16 behind float32 input and output (casts inside the graph)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(model).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float32 → (B, C, H, W) float32, computed in float16."""
        return self.net(x.half()).float()


def max_difference(model: torch.nn.Module, onnx_path: Path, inputs: Sequence[np.ndarray]) -> float:
    """Largest |PyTorch − ONNX Runtime (CPU)| over ``inputs``, each ``(B, 1, H, W)`` float32."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            expected = model(torch.from_numpy(x)).numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            if got.shape != expected.shape:
                raise ExportError(
                    f"{onnx_path}: output shape {got.shape}, PyTorch {expected.shape}"
                )
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def real_inputs(paths: Sequence[Path], size: int, spec: dict[str, Any]) -> list[np.ndarray]:
    """Normalised ``size``² crops (top left, reflect-padded) of 2D images, ``(1, 1, S, S)``."""
    normalizer = normalize.from_spec(spec)
    crops = []
    for path in paths:
        x, _ = normalizer.before(read_plane(path).pixels)  # TIFF, OME-TIFF or PNG
        pad = [(0, max(0, size - n)) for n in x.shape]
        x = np.pad(x, pad, mode="reflect")[:size, :size]
        crops.append(np.ascontiguousarray(x, np.float32)[None, None])
    return crops


def manifest_entry(
    loaded: Loaded, *, name: str, file: str, onnx_path: Path, patch: int, overlap: float
) -> dict[str, Any]:
    """The manifest entry (keys of docs/ARCHITECTURE.md) for an exported model.

    ``pixel_size_um`` is ``data.resample_um`` when the model was trained at a physical pixel
    size, else the training images' common pixel size (null when they differ).
    """
    data_cfg = loaded.config.data
    modalities = [str(m) for m in data_cfg.modalities]
    if set(data_cfg.modalities) == set(MODALITIES):
        modalities = ["*"]  # also serves files whose modality is unknown
    return {
        "name": name, "file": file, "sha256": manifest.sha256_file(onnx_path),
        "organelles": [str(o) for o in data_cfg.organelles], "modalities": modalities,
        "patch": patch, "overlap": overlap, "pixel_size_um": loaded.pixel_size_um,
        "input_norm": {"kind": "percentile", "low": data_cfg.norm_low, "high": data_cfg.norm_high},
        **_scale_and_stack_keys(loaded.config),
    }


def _scale_and_stack_keys(cfg: TrainConfig) -> dict[str, Any]:
    """The optional manifest keys of issue 11, written only when they differ from the defaults.

    ``pixel_size_um_range`` (``[lo, hi)`` µm, the images the model serves) and ``zstack`` (the
    focus-stack reduction it was trained on); without them (no range, one plane) an entry
    reads as before.
    """
    keys: dict[str, Any] = {}
    if cfg.data.pixel_size_range_um is not None:
        keys["pixel_size_um_range"] = list(cfg.data.pixel_size_range_um)
    if cfg.data.zstack != ZStack.PLANE:
        keys["zstack"] = str(cfg.data.zstack)
    return keys


def write_manifest(weights_dir: Path, entries: Sequence[dict[str, Any]]) -> Path:
    """Write ``weights_dir/manifest.json`` (format 1) with ``entries`` sorted by name."""
    return write_json(weights_dir / manifest.MANIFEST_NAME,
                      {"format": 1, "models": sorted(entries, key=lambda m: m["name"])})


def update_manifest(weights_dir: Path, entry: dict[str, Any]) -> Path:
    """Add ``entry`` to ``weights_dir/manifest.json``, replacing one with the same name."""
    path = weights_dir / manifest.MANIFEST_NAME
    models = json.loads(path.read_text(encoding="utf-8")).get("models", []) \
        if path.exists() else []
    return write_manifest(weights_dir, [*(m for m in models if m.get("name") != entry["name"]),
                                        entry])


@dataclass(frozen=True)
class ExportReport:
    """What an export produced and measured."""

    onnx_path: Path
    bytes: int
    parameters: int
    parity_random: float
    parity_real: float | None
    entry: dict[str, Any]
    parity_fp16: float | None = None


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, name: str | None = None,
    patch: int | None = None, overlap: float | None = None,
    samples: Sequence[Path] | None = None, tolerance: float = TOLERANCE,
    write_manifest: bool = True, fp16: bool = False, fp16_tolerance: float = FP16_TOLERANCE,
    stem: str | None = None, static_tile: bool = False,
    modality: Modality | str | None = None,
) -> ExportReport:
    """Export one checkpoint into the weights folder ``out``; see the module docstring.

    With ``fp16``, also writes ``<stem>.fp16.onnx`` (float16 inside, float32 in and
    out), checked against the float32 PyTorch model with ``fp16_tolerance``. ``stem``: the
    files' name (default: the organelles, the modalities when not all three, and the
    pixel-size range when there is one). With ``static_tile`` the graph takes ``patch``²
    tiles only, and parity is checked at that size. A modality-conditioned checkpoint exports
    one ``modality`` per call (:func:`for_modality`).

    Raises
    ------
    ExportError
        When a parity check exceeds its tolerance (the ONNX file is then removed).
    """
    loaded = load_checkpoint(checkpoint)
    if modality is not None:
        loaded = for_modality(loaded, modality)
    elif conditioning.conditioned(loaded.config):
        raise ExportError(f"{checkpoint}: a modality-conditioned model exports per modality "
                          f"(give modality: one of {', '.join(loaded.config.data.modalities)})")
    cfg = loaded.config
    name = name or f"{_stem(cfg)}-{cfg.model.name}"
    if stem is None:
        stem = _stem(cfg)
        if cfg.data.pixel_size_range_um is not None:  # a per-range set shares one folder
            stem += "_{:g}-{:g}um".format(*cfg.data.pixel_size_range_um)
    patch = patch or cfg.val.tile
    overlap = cfg.val.overlap if overlap is None else overlap
    multiple, rule = cfg.model.size_multiple()
    if patch % multiple:
        raise ExportError(f"patch {patch} is not a multiple of {rule} = {multiple}")
    out = Path(out)
    onnx_path = export_onnx(loaded.model, out / f"{stem}.onnx", patch, static_tile=static_tile)
    # the training config beside the model, so a fine-tuning run can rebuild its architecture
    write_text(config_beside(onnx_path), dump_config(cfg))

    rng = np.random.default_rng(0)
    random_inputs = [
        rng.standard_normal((1, 1, patch, patch), dtype=np.float32),
        rng.standard_normal((2, 1, patch, patch) if static_tile else
                            (2, 1, 3 * multiple, 5 * multiple), dtype=np.float32),
    ]
    spec = {"kind": "percentile", "low": cfg.data.norm_low, "high": cfg.data.norm_high}
    sample_paths = list(samples) if samples else [p for p in loaded.val_planes if p.exists()]
    real = real_inputs(sample_paths, patch, spec)  # read once, for fp32 and fp16 parity
    parity_random = max_difference(loaded.model, onnx_path, random_inputs)
    parity_real = max_difference(loaded.model, onnx_path, real) if real else None
    _check_parity(onnx_path, max(parity_random, parity_real or 0.0), tolerance)
    entry = manifest_entry(loaded, name=name, file=onnx_path.name, onnx_path=onnx_path,
                           patch=patch, overlap=overlap)
    parity_fp16 = None
    if fp16:
        half_path = out / f"{stem}.fp16.onnx"
        parity_fp16 = _export_fp16(loaded.model, half_path, patch, [*random_inputs, *real],
                                   fp16_tolerance, static_tile)
        entry["fp16"] = {"file": half_path.name, "sha256": manifest.sha256_file(half_path)}
    if write_manifest:
        update_manifest(out, entry)
    return ExportReport(
        onnx_path=onnx_path, bytes=onnx_path.stat().st_size,
        parameters=sum(p.numel() for p in loaded.model.parameters()),
        parity_random=parity_random, parity_real=parity_real, entry=entry,
        parity_fp16=parity_fp16,
    )


def _export_fp16(model: torch.nn.Module, path: Path, patch: int,
                 inputs: Sequence[np.ndarray], tolerance: float, static_tile: bool) -> float:
    """Write the float16 variant of ``model`` to ``path``; its parity with float32 PyTorch."""
    export_onnx(HalfPrecision(model), path, patch, static_tile=static_tile)
    parity = max_difference(model, path, inputs)
    _check_parity(path, parity, tolerance)
    return parity


def _check_parity(onnx_path: Path, worst: float, tolerance: float) -> None:
    if worst > tolerance:
        onnx_path.unlink()
        raise ExportError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {worst:.3g} "
                          f"(tolerance {tolerance:.3g}); file removed")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m lightmycells.export --checkpoint CKPT --out WEIGHTS_DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m lightmycells.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, required=True, nargs="+",
                        help="training checkpoint(s) (best.pt); one ONNX file each")
    parser.add_argument("--out", type=Path, required=True, help="weights folder")
    parser.add_argument("--name", help="manifest name (default <organelles>-<model>)")
    parser.add_argument("--patch", type=int, help="manifest tile edge (default: val.tile)")
    parser.add_argument("--overlap", type=float, help="manifest overlap (default: val.overlap)")
    parser.add_argument("--sample", type=Path, nargs="*", default=None,
                        help="OME-TIFF inputs for the real-image parity check "
                             "(default: the run's validation planes)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest allowed |PyTorch - ONNX| (default %(default)g)")
    parser.add_argument("--fp16", action="store_true",
                        help="also write a float16 variant (used on CUDA) with its parity")
    parser.add_argument("--fp16-tolerance", type=float, default=FP16_TOLERANCE,
                        help="largest allowed |PyTorch fp32 - ONNX fp16| (default %(default)g)")
    parser.add_argument("--static-tile", action="store_true",
                        help="fix the graph's tile to --patch (batch stays dynamic), e.g. for a "
                             "UNETR whose attention should see the training tile size only")
    args = parser.parse_args(argv)
    if args.name and len(args.checkpoint) > 1:
        parser.error("--name needs a single --checkpoint")
    jobs = []
    for checkpoint in args.checkpoint:
        try:
            jobs += [(checkpoint, m) for m in export_modalities(checkpoint)]
        except ExportError as exc:
            print(f"error: {exc}")
            return 1
    for checkpoint, modality in jobs:
        name = args.name and (f"{args.name}-{modality}" if modality else args.name)
        try:
            report = export_checkpoint(
                checkpoint, args.out, name=name, patch=args.patch, overlap=args.overlap,
                samples=args.sample, tolerance=args.tolerance, fp16=args.fp16,
                fp16_tolerance=args.fp16_tolerance, static_tile=args.static_tile,
                modality=modality,
            )
        except (ExportError, ome.ImageError, OSError) as exc:
            print(f"error: {exc}")
            return 1
        real = "n/a" if report.parity_real is None else f"{report.parity_real:.2e}"
        if report.parity_fp16 is not None:
            real += f"; fp16 variant max |torch fp32 - onnx fp16| {report.parity_fp16:.2e}"
        entry = report.entry
        print(f"{report.onnx_path}: {report.parameters} parameters, "
              f"{report.bytes / 1e6:.2f} MB, max |torch - onnx| random {report.parity_random:.2e}"
              f", real {real}; manifest entry '{entry['name']}' "
              f"({', '.join(entry['organelles'])} × {', '.join(entry['modalities'])})")
    try:
        manifest.load(args.out)
    except manifest.ManifestError as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":  # python -m lightmycells.export is the documented name
    import sys

    sys.exit(main())
