"""Write a weights-folder model as a bioimage.io package, and test it with ``bioimageio.core``.

``python -m lightmycells.train.bioimageio --weights weights --model nucleus-runet --out
nucleus.zip`` writes a model package in the bioimage.io model-description format 0.5 (the
format BiaPy, CAREamics, ilastik, deepImageJ and QuPath read):

- ``weights.onnx``: the manifest entry's ONNX file, with its opset;
- one input ``(batch, channel, y, x)``: the transmitted-light image in its own units, with
  the pixel size on ``y``/``x`` when the model has one (``pixel_size_um``), sizes
  ``min + n·step`` probed on the model, and the manifest's ``input_norm`` as the format's own
  pre-processing (percentile → ``scale_range`` per sample; zscore →
  ``zero_mean_unit_variance``; minmax → ``scale_range`` 0/100; none → nothing);
- one output ``(batch, channel, y, x)``, one channel per organelle, the same size as the input,
  no halo unless asked for (``halo``: bioimage.io tools pad the whole input by the halo
  before its normalisation, which shifts the percentiles: with a 32 px halo
  ``bioimageio.core``'s prediction of the bundled 256² sample has PCC 0.905 with the
  container's, without one it is the same to 1e-7); no post-processing: like the container,
  the package returns the model's percentile-normalised fluorescence;
- test tensors made from a bundled sample: the input is a crop of the sample in its own
  units, the output is what this project's engine predicts for it (the manifest's
  normalisation, then ONNX Runtime on the CPU), so the validator's check compares
  ``bioimageio.core``'s pipeline with ours;
- a cover (input and prediction side by side), a README model card, authors, licence,
  citations, and ``config.lightmycells``: the manifest entry (less its files), which
  ``lightmycells.engine.bioimageio_source`` reads back to serve the package.

:func:`validate` runs ``bioimageio.core.test_model`` on the CPU (ONNX Runtime's CPU provider).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lightmycells.engine import manifest, normalize
from lightmycells.engine.manifest import ModelEntry
from lightmycells.io import ome
from lightmycells.io.atomic import replacing
from lightmycells.vocab import MODALITIES

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The bundled BF sample (256², uint16) the test tensors and the cover are cut from.
DEFAULT_SAMPLE = (REPO_ROOT / "test" / "input" / "images" / "organelles-transmitted-light-ome-tiff"
                  / "sample1_BF_z0.tiff")
#: Largest test-tensor edge: the validator runs the whole test input in one call.
MAX_TEST_EDGE = 256
#: Spatial multiples probed for the model's size step (a UNet of depth d needs 2**d).
STEP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
#: bioimage.io's scale_range adds this to the percentile range (the container's Percentile
#: treats a range ≤ 1e-6 as 1 instead; both agree to ~1e-6 / range on real images).
EPS = 1e-6
CPU_PROVIDER = "CPUExecutionProvider"
#: The input tensor's channel: one transmitted-light image (BF, PC or DIC).
INPUT_CHANNEL = "transmitted_light"


class PackageError(ValueError):
    """The model cannot be packaged; the message names the model and the problem."""


class Citation(BaseModel):
    """One reference: its text and a DOI (no URL: the validator would fetch it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = Field(min_length=1, description="Authors, title, venue, year.")
    doi: str = Field(pattern=r"^10\.\d{4,9}/\S+$", description="DOI without https://doi.org/.")


#: The papers the RUNet models follow: the seed system (Wodzinski & Müller's RUNet for Light
#: My Cells), the U-Net it builds on, and label-free prediction of fluorescence.
SEED_CITATIONS: tuple[Citation, ...] = (
    Citation(text="Wodzinski M, Müller H. Patch-Based Encoder-Decoder Architecture for "
             "Automatic Transmitted Light to Fluorescence Imaging Transition: Contribution to "
             "the LightMyCells Challenge. arXiv:2406.01187 (2024)",
             doi="10.48550/arXiv.2406.01187"),
    Citation(text="Ronneberger O, Fischer P, Brox T. U-Net: Convolutional Networks for "
             "Biomedical Image Segmentation. MICCAI 2015, LNCS 9351",
             doi="10.1007/978-3-319-24574-4_28"),
    Citation(text="Ounkomol C, Seshamani S, Maleckar MM, Collman F, Johnson GR. Label-free "
             "prediction of three-dimensional fluorescence images from transmitted-light "
             "microscopy. Nat Methods 15, 917-920 (2018)",
             doi="10.1038/s41592-018-0111-2"),
)


class ModelCard(BaseModel):
    """What the package says about the model beyond its tensors (the README and metadata)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=5, max_length=64, pattern=r"^[A-Za-z0-9_+\- ()]+$",
                      description="Human-readable name (bioimage.io's character set).")
    description: str = Field(min_length=1, max_length=512, description="One or two sentences.")
    authors: tuple[str, ...] = Field(min_length=1, description="Author names.")
    license: str = Field(default="BSD-3-Clause", description="SPDX licence id.")
    citations: tuple[Citation, ...] = Field(default=SEED_CITATIONS, min_length=1)
    training_data: str = Field(min_length=1, description="What the model was trained on.")
    limitations: str = Field(min_length=1, description="Where the model must not be trusted.")
    details: str = Field(default="", description="Extra markdown for the README's training "
                         "section (architecture, steps).")
    evaluation: str = Field(default="not measured", description="Markdown for the README's "
                            "Validation section: held-out figures, with the command.")
    tags: tuple[str, ...] = Field(default=(), description="Extra tags.")
    maintainers: tuple[str, ...] = Field(default=(), description="GitHub user names of the "
                                         "maintainers (bioimage.io asks for one to upload).")
    version: str = Field(default="0.1.0", description="Package version (SemVer).")


def find_entry(weights_dir: Path, name: str) -> tuple[manifest.Manifest, ModelEntry]:
    """The loaded manifest and its entry called ``name``."""
    loaded = manifest.load(weights_dir)
    for entry in loaded.models:
        if entry.name == name:
            return loaded, entry
    names = ", ".join(m.name for m in loaded.models)
    raise PackageError(f"{weights_dir / manifest.MANIFEST_NAME}: no model {name!r} "
                       f"(models: {names})")


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: the probe's failing sizes are expected
    return ort.InferenceSession(str(path), options, providers=[CPU_PROVIDER])


def _runs(session: Any, height: int, width: int, channels: int) -> bool:
    """Whether the model maps a (1, 1, height, width) input to (1, channels, height, width)."""
    name = session.get_inputs()[0].name
    try:
        (y,) = session.run(None, {name: np.zeros((1, 1, height, width), np.float32)})[:1]
    except Exception:  # ORT raises its own types for shape mismatches inside the graph
        return False
    return tuple(y.shape) == (1, channels, height, width)


def probe_sizes(session: Any, channels: int) -> tuple[int, int]:
    """(min, step) of the sizes the model accepts.

    The step is the smallest power of two at which the model runs at 3·step × 5·step, the
    minimum the smallest multiple of it that runs as a square.

    Raises
    ------
    PackageError
        When no candidate step up to 128 works (not a fully convolutional 2D model).
    """
    for step in STEP_CANDIDATES:
        if _runs(session, 3 * step, 5 * step, channels):
            for minimum in (step, 2 * step, 3 * step):
                if _runs(session, minimum, minimum, channels):
                    return minimum, step
    raise PackageError("the model runs at no size 3·s × 5·s (s = 1, 2, …, 128); the package "
                       "needs a fully convolutional (B, 1, H, W) → (B, C, H, W) model")


def _crop(image: np.ndarray, edge: int) -> np.ndarray:
    """A centred ``edge``² crop (the image must be at least that large)."""
    top, left = ((n - edge) // 2 for n in image.shape)
    return image[top:top + edge, left:left + edge]


@dataclass(frozen=True)
class Sizes:
    """The package's spatial sizes: inputs ``min + n·step`` px per side, output ``halo``."""

    min: int
    step: int
    halo: int

    def test_edge(self, shape: tuple[int, ...]) -> int:
        """Largest valid size ≤ the sample and ``MAX_TEST_EDGE``."""
        limit = min(min(shape), MAX_TEST_EDGE)
        if limit < self.min:
            raise PackageError(f"the sample is {shape[0]}x{shape[1]} px; the package needs "
                               f"at least {self.min} px per side")
        return self.min + (limit - self.min) // self.step * self.step


def sizes_for(session: Any, channels: int, halo: int) -> Sizes:
    """The probed sizes, the minimum raised until a tile keeps pixels inside its halo."""
    if halo < 0:
        raise PackageError(f"halo must be ≥ 0 px (got {halo})")
    minimum, step = probe_sizes(session, channels)
    while minimum <= 2 * halo:
        minimum += step
    return Sizes(minimum, step, halo)


def predict_native(session: Any, entry: ModelEntry, image: np.ndarray) -> np.ndarray:
    """The lightmycells prediction for a whole ``(Y, X)`` image in one call: ``(1, C, Y, X)``."""
    x, _ = entry.input_norm.build().before(image)
    name = session.get_inputs()[0].name
    return session.run(None, {name: x[None, None].astype(np.float32)})[0].astype(np.float32)


# --- the format's pre-processing for each manifest normalisation (registry by kind) ---

def _percentile(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": "scale_range", "kwargs": {
        "axes": ["channel", "y", "x"], "min_percentile": float(spec.get("low", 2.0)),
        "max_percentile": float(spec.get("high", 99.8)), "eps": EPS}}]


def _zscore(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["channel", "y", "x"],
                                                         "eps": EPS}}]


def _minmax(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return _percentile({"low": 0.0, "high": 100.0})


#: manifest ``input_norm.kind`` → bioimage.io pre-processing steps (per sample, jointly over
#: channel, y and x: one image at a time, as the container normalises).
PREPROCESSING: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "percentile": _percentile,
    "zscore": _zscore,
    "minmax": _minmax,
    "none": lambda spec: [],
}


def _space_axes(entry: ModelEntry) -> tuple[dict[str, Any], dict[str, Any]]:
    """The y and x axes' scale and unit (the pixel size; none when the model has none)."""
    if entry.pixel_size_um is None:
        extra: dict[str, Any] = {"description": "no fixed pixel size: trained across pixel "
                                 "sizes, the image is used as it is"}
    else:
        extra = {"unit": "micrometer", "scale": float(entry.pixel_size_um)}
    return {"type": "space", "id": "y", **extra}, {"type": "space", "id": "x", **extra}


def inputs_outputs(
    entry: ModelEntry, sizes: Sizes, test_in: str, test_out: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``inputs`` and ``outputs`` of the model description (plain YAML values)."""
    y_axis, x_axis = _space_axes(entry)
    size = {"min": sizes.min, "step": sizes.step}
    inputs = [{
        "id": "input",
        "description": "transmitted-light image (BF, PC or DIC) in its own units",
        "axes": [{"type": "batch"},
                 {"type": "channel", "channel_names": [INPUT_CHANNEL]},
                 {**y_axis, "size": size}, {**x_axis, "size": size}],
        "test_tensor": {"source": test_in},
        "sample_tensor": {"source": "sample_input.tif"},
        "data": {"type": "float32"},
        "preprocessing": PREPROCESSING[entry.input_norm.kind](entry.input_norm.model_dump()),
    }]
    out_space = [{**axis, "size": {"tensor_id": "input", "axis_id": axis["id"]},
                  **({"halo": sizes.halo} if sizes.halo else {})} for axis in (y_axis, x_axis)]
    outputs = [{
        "id": "output",
        "description": "predicted fluorescence, percentile-normalised units, one channel "
                       "per organelle",
        "axes": [{"type": "batch"},
                 {"type": "channel", "channel_names": [str(o) for o in entry.organelles]},
                 *out_space],
        "test_tensor": {"source": test_out},
        "sample_tensor": {"source": "sample_output.tif"},
        "data": {"type": "float32"},
    }]
    return inputs, outputs


def lightmycells_config(entry: ModelEntry) -> dict[str, Any]:
    """The manifest entry less its files: what the container needs to serve the package."""
    return entry.model_dump(mode="json", exclude={"file", "sha256", "fp16"})


def cover_image(image: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Input | each output channel, side by side, each scaled to its 2–99.8 % range: 0..1."""
    panels = [image, *prediction[0]]
    scaled = []
    for panel in panels:
        low, high = normalize.percentiles(np.asarray(panel, np.float64), (2.0, 99.8))
        scaled.append(np.clip((panel - low) / max(high - low, EPS), 0.0, 1.0))
    return np.concatenate(scaled, axis=1)


def readme(entry: ModelEntry, card: ModelCard, sizes: Sizes) -> str:
    """The package's model card (markdown)."""
    organelles = ", ".join(str(o) for o in entry.organelles)
    modalities = ("BF, PC or DIC" if ("*" in entry.modalities
                  or set(entry.modalities) == set(MODALITIES)) else ", ".join(entry.modalities))
    pixel = (f"{entry.pixel_size_um} µm (resample other images to it)" if entry.pixel_size_um
             else "none: the model was trained across pixel sizes and the image is used as it is")
    halo_text = (f"{sizes.halo} px (tools pad the input by it before normalising)"
                 if sizes.halo else "none (a whole image predicts as in the container)")
    norm = entry.input_norm.model_dump()
    norm_text = {
        "percentile": f"per image, `(x - p{norm.get('low')}) / (p{norm.get('high')} - "
                      f"p{norm.get('low')})` without clipping (`scale_range`)",
        "zscore": "per image, zero mean and unit variance (`zero_mean_unit_variance`)",
        "minmax": "per image, `(x - min) / (max - min)` (`scale_range` 0/100)",
        "none": "none",
    }[norm["kind"]]
    refs = "\n".join(f"- {c.text}. doi:[{c.doi}](https://doi.org/{c.doi})"
                     for c in card.citations)
    return f"""# {card.name}

{card.description}

## Limitations

{card.limitations}

## Model

- Task: in-silico labelling. One 2D transmitted-light image ({modalities}) in, predicted
  fluorescence of **{organelles}** out (one output channel each, same size as the input).
- Architecture and weights: `{entry.name}` of the lightmycells project, ONNX.
- Input sizes: `{sizes.min} + n·{sizes.step}` px per side; output halo: {halo_text}. The
  lightmycells container tiles large images ({entry.patch}² tiles or larger, overlap
  {entry.overlap:g} of {entry.patch}, Hann blending).
- Pixel size: {pixel}.
- Pre-processing: {norm_text}.
- Post-processing: none. The output is in percentile-normalised fluorescence units (the
  Light My Cells evaluation normalises predictions and targets with the 2 / 99.8
  percentiles itself, so the absolute scale is free).

## Training data

{card.training_data}

{card.details}

## Validation

The package passes `bioimageio.core`'s test on the CPU (ONNX Runtime): its test output is
what the lightmycells engine predicts for the test input (the same normalisation, then ONNX
Runtime), and `bioimageio.core` reproduces it from the test input with its own
pre-processing.

{card.evaluation}

## Run it

With `bioimageio.core` (any tool that reads bioimage.io packages works the same way):

```bash
bioimageio predict PACKAGE.zip --inputs image.npy --outputs prediction.npy \
    --devices '["CPUExecutionProvider"]'
```

With the lightmycells container (OME-TIFF in, OME-TIFF out, tiling for large images):

```bash
python inference.py --input IN --output OUT --weights PACKAGE.zip
```

## Cite

{refs}

## Licence

{card.license}
"""


def _write_files(
    entry: ModelEntry, session: Any, sample: Path, card: ModelCard, folder: Path, sizes: Sizes
) -> None:
    """Write the test and sample tensors, the cover and the README into ``folder``."""
    image, _ = ome.read(sample)
    if image.ndim == 3:  # a Z-stack: its middle plane
        image = image[image.shape[0] // 2]
    edge = sizes.test_edge(image.shape)
    crop = np.ascontiguousarray(_crop(image, edge), np.float32)
    prediction = predict_native(session, entry, crop)
    np.save(folder / "test_input.npy", crop[None, None])
    np.save(folder / "test_output.npy", prediction)
    import tifffile

    tifffile.imwrite(folder / "sample_input.tif", _crop(image, edge))  # in its own dtype
    tifffile.imwrite(folder / "sample_output.tif", prediction[0],  # (C, Y, X)
                     photometric="minisblack")
    import matplotlib.image

    matplotlib.image.imsave(folder / "cover.png", cover_image(crop, prediction), cmap="gray",
                            vmin=0.0, vmax=1.0)
    (folder / "README.md").write_text(readme(entry, card, sizes), encoding="utf-8")


def description(entry: ModelEntry, card: ModelCard, opset: int, sizes: Sizes) -> dict[str, Any]:
    """The ``rdf.yaml`` content (model description format 0.5) for files written beside it."""
    inputs, outputs = inputs_outputs(entry, sizes, "test_input.npy", "test_output.npy")
    organelle_tags = {"nucleus": "nuclei", "mitochondria": "mitochondria"}
    tags = ["in-silico-labeling", "transmission-light-microscopy",
            "fluorescence-light-microscopy", "2d", "cells", "unet", "pytorch", "onnx",
            "lightmycells", *(organelle_tags.get(str(o), str(o)) for o in entry.organelles),
            *card.tags]
    return {
        "type": "model", "format_version": "0.5.12", "name": card.name,
        "description": card.description, "version": card.version,
        "authors": [{"name": a} for a in card.authors],
        **({"maintainers": [{"github_user": m} for m in card.maintainers]}
           if card.maintainers else {}),
        "cite": [c.model_dump() for c in card.citations],
        "license": card.license,
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "tags": list(dict.fromkeys(tags)),
        "inputs": inputs, "outputs": outputs,
        "weights": {"onnx": {"source": "weights.onnx", "opset_version": opset}},
        "config": {
            "lightmycells": lightmycells_config(entry),
            "bioimageio": {
                "task": "in-silico-labeling",
                "modality": "transmitted light (BF, PC, DIC)",
                "target_structure": [str(o) for o in entry.organelles],
                "bias_risks_limitations": {"limitations": card.limitations},
            },
        },
    }


def onnx_opset(path: Path) -> int:
    """The default-domain opset of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_package(
    weights_dir: str | Path, model: str, out: str | Path, card: ModelCard,
    *, sample: str | Path = DEFAULT_SAMPLE, halo: int = 0,
) -> Path:
    """Write the bioimage.io package (a ``.zip``) of one manifest model.

    ``halo``: pixels tiling tools crop from each side of a tile's output (0: none; see the
    module docstring for what a halo costs).

    Raises
    ------
    PackageError
        Naming the model and the problem (unknown model, a model that is not fully
        convolutional, a sample too small); nothing is left at ``out``.
    """
    from bioimageio.spec import (
        InvalidDescr,
        ValidationContext,
        build_description,
        save_bioimageio_package,
    )

    weights_dir, out = Path(weights_dir), Path(out)
    if out.suffix != ".zip":
        raise PackageError(f"{out}: the package must be a .zip file")
    _, entry = find_entry(weights_dir, model)
    onnx_path = weights_dir / entry.file
    session = _session(onnx_path)
    with tempfile.TemporaryDirectory(prefix="bioimageio-") as tmp:
        folder = Path(tmp) / "package"
        folder.mkdir()
        shutil.copyfile(onnx_path, folder / "weights.onnx")
        sizes = sizes_for(session, len(entry.organelles), halo)
        _write_files(entry, session, Path(sample), card, folder, sizes)
        content = description(entry, card, onnx_opset(onnx_path), sizes)
        with ValidationContext(root=folder, perform_io_checks=True):
            descr = build_description(content)
        if isinstance(descr, InvalidDescr):
            raise PackageError(f"{model}: the description is invalid: "
                               f"{_first_error(descr.validation_summary)}")
        packed = save_bioimageio_package(descr, output_path=Path(tmp) / "package.zip")
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out) as tmp_out:
            shutil.copyfile(packed, tmp_out)
    return out


def _first_error(summary: Any) -> str:
    for detail in summary.details:
        for error in detail.errors:
            return f"{'.'.join(map(str, error.loc))}: {error.msg}"
    return summary.status


def validate(package: str | Path) -> Any:
    """``bioimageio.core.test_model`` on the CPU: format, test tensors, sizes. The summary back."""
    from bioimageio.core import test_model

    return test_model(Path(package), weight_format="onnx", devices=[CPU_PROVIDER])


def passed(summary: Any) -> bool:
    """Whether the test passed: status "passed" and no failed check.

    (``bioimageio.core`` 0.11 leaves a folder package's status at "valid-format" when a test
    after the format check fails, so the checks are counted too.)
    """
    return summary.status == "passed" and not any(d.status == "failed" for d in summary.details)


def summary_line(package: Path, summary: Any) -> str:
    """``nucleus.zip: passed (9 checks passed, 0 failed)`` or the first failed check."""
    details = list(summary.details)
    failed = [d for d in details if d.status == "failed"]
    status = "passed" if passed(summary) else "failed"
    line = (f"{package}: {status} ({len(details) - len(failed)} checks passed, "
            f"{len(failed)} failed)")
    if failed:
        line += f"; first failure: {failed[0].name}: {_first_error(summary)}"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m lightmycells.train.bioimageio --weights W --model M --out Z``."""
    parser = argparse.ArgumentParser(prog="python -m lightmycells.train.bioimageio",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="weights folder")
    parser.add_argument("--model", required=True, help="manifest entry name")
    parser.add_argument("--out", type=Path, required=True, help="package to write (.zip)")
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE,
                        help="image the test tensors and the cover are cut from")
    parser.add_argument("--name", help="package name (default: the entry's name)")
    parser.add_argument("--author", action="append", required=True, help="author (repeatable)")
    parser.add_argument("--license", default="BSD-3-Clause", help="SPDX id (default %(default)s)")
    parser.add_argument("--training-data", required=True, help="what the model was trained on")
    parser.add_argument("--limitations", required=True, help="where it must not be trusted")
    parser.add_argument("--halo", type=int, default=0,
                        help="output halo in px for tiling tools (default %(default)s: none)")
    parser.add_argument("--no-validate", action="store_true", help="skip bioimageio.core's test")
    args = parser.parse_args(argv)
    card = ModelCard(name=args.name or f"lightmycells {args.model}",
                     description=f"Label-free transmitted light to fluorescence ({args.model}).",
                     authors=tuple(args.author), license=args.license,
                     training_data=args.training_data, limitations=args.limitations)
    try:
        path = export_package(args.weights, args.model, args.out, card, sample=args.sample,
                              halo=args.halo)
    except (PackageError, manifest.ManifestError, ome.ImageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.no_validate:
        print(f"{path}: written (not validated)")
        return 0
    summary = validate(path)
    print(summary_line(path, summary))
    return 0 if passed(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
