"""The inference command line: its arguments and every check that needs no model.

Without ``--input``/``--output`` the run is in Grand-Challenge mode (``/input`` → ``/output``,
all four organelles, nothing but the outputs written). With them it is in batch mode over
either input layout and writes ``OUT/summary.json``. A :class:`ConfigError` here means exit
code 2 with nothing written; ``inference.py`` checks all of it before importing ONNX Runtime.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightmycells.io.inputs import Discovery, discover
from lightmycells.io.ome import PLAUSIBLE_PIXEL_UM, implausible
from lightmycells.run import shard as sharding
from lightmycells.run.batch import EXIT_CONFIG, EXIT_OK
from lightmycells.vocab import (
    MODALITIES,
    ORGANELLES,
    Modality,
    ModalityError,
    Organelle,
    parse_modality,
    parse_organelles,
)

GC_INPUT, GC_OUTPUT = Path("/input"), Path("/output")
ZSTACK_CHOICES = ("best", "mip", "all")  # = engine.zstack.INFERENCE (tests/test_zstack.py)


class ConfigError(Exception):
    """Bad usage or configuration: reported in one line, exit code 2, nothing written."""


@dataclass(frozen=True)
class Settings:
    """Checked settings of one run."""

    input: Path
    output: Path
    grand_challenge: bool
    organelles: tuple[Organelle, ...]
    weights: Path
    shard: sharding.Shard
    summary: Path | None


def build_parser(default_weights: Path) -> argparse.ArgumentParser:
    """The argument parser (``python inference.py --help``)."""
    parser = argparse.ArgumentParser(
        prog="inference.py",
        description="Predict nucleus, mitochondria, tubulin and actin fluorescence from "
        "BF/PC/DIC OME-TIFFs. Without --input/--output: Grand-Challenge mode "
        "(/input -> /output).",
        epilog="Exit codes: 0 all written, 1 some inputs failed, 2 bad usage or configuration.",
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", type=Path, help="Grand-Challenge input folder or any folder of "
                    "TIFFs (searched recursively)")
    io.add_argument("--output", type=Path, help="output folder (Grand-Challenge layout)")
    io.add_argument("--organelles", default=",".join(ORGANELLES),
                    help="comma-separated subset of %(default)s")
    io.add_argument("--modality", type=_modality,
                    help="modality of inputs whose metadata and name do not say (plain TIFFs): "
                    "BF, PC or DIC, also as microscopes write them (Brightfield, Phase "
                    "Contrast, Ph3, Nomarski …), any case")
    io.add_argument("--pixel-size", type=_pixel_size, metavar="UM",
                    help="pixel size in µm of inputs whose metadata does not state one (plain "
                    "TIFFs, exports that dropped it): one value, or Y,X; models trained at a "
                    "pixel size resample to it (default: such inputs run at their own pixels)")
    io.add_argument("--zstack", choices=ZSTACK_CHOICES,
                    help="Z-stack inputs: sharpest plane, max projection, or every plane "
                    "(default: as each model was trained, the manifest's zstack; best for "
                    "models trained on single planes)")
    io.add_argument("--summary", type=Path,
                    help="where to write the run's summary (default: OUT/summary.json in batch "
                    "mode, OUT/summary.shard-I-of-N.json for a shard, nowhere in "
                    "Grand-Challenge mode)")
    model = parser.add_argument_group("model and runtime")
    model.add_argument("--weights", type=Path, default=default_weights,
                       help="folder with manifest.json and the ONNX models, or a bioimage.io "
                       "model package (.zip, folder or rdf.yaml; docs/BIOIMAGEIO.md) "
                       "(default %(default)s)")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: CUDA when a CUDA session really works, else the CPU (said in "
                       "one line); cuda: fail rather than fall back (default %(default)s)")
    model.add_argument("--threads", type=_positive_int,
                       help="CPU threads (default: the CPUs this process may use)")
    model.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    model.add_argument("--batch-size", type=_positive_int,
                       help="tiles per model call, in patch-sized tiles (default: from the free "
                       "GPU memory on CUDA, 4 on the CPU)")
    model.add_argument("--overlap", type=_fraction, help="tile overlap 0..0.9 (default: "
                       "the manifest's)")
    model.add_argument("--no-resample", action="store_true",
                       help="do not resample images to the model's pixel size")
    model.add_argument("--check", action="store_true",
                       help="print the routing table (organelle x modality -> model) and exit; "
                       "exit 2 if a route is missing")
    run = parser.add_argument_group("large runs")
    run.add_argument("--shard", help="process shard I of N (0-based, e.g. 2/8); default from "
                     "JOB_COMPLETION_INDEX/JOB_COMPLETIONS or SLURM_ARRAY_TASK_ID/"
                     "SLURM_ARRAY_TASK_COUNT")
    run.add_argument("--resume", action="store_true",
                     help="skip inputs whose outputs were made with these weights and settings "
                     "from the input as it is now (their record in OUT/.lightmycells says so); "
                     "redo the others, saying why")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def _modality(text: str) -> Modality:
    try:
        return parse_modality(text)
    except ModalityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pixel_size(text: str) -> tuple[float, float]:
    """``0.1`` → (0.1, 0.1); ``0.1,0.2`` → (y, x); plausible sizes only (``ome``'s rule)."""
    try:
        sizes = [float(v) for v in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or implausible(sizes) is not None:
        lo, hi = PLAUSIBLE_PIXEL_UM
        raise argparse.ArgumentTypeError(
            f"expected a pixel size in µm from {lo:g} to {hi:g}, or Y,X (got {text!r})")
    return (sizes[0], sizes[-1])


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.9 (got {value})")
    return value


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Check the arguments that need no model and no file I/O.

    Raises
    ------
    ConfigError
        With the one-line reason.
    """
    if (args.input is None) != (args.output is None):
        raise ConfigError("--input and --output go together (neither: Grand-Challenge mode)")
    grand_challenge = args.input is None
    try:
        organelles = parse_organelles(args.organelles)
        shard = sharding.parse(args.shard) if args.shard else sharding.from_environment(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    output = GC_OUTPUT if grand_challenge else args.output
    # Grand Challenge wants nothing but the outputs in /output; batch runs keep a summary,
    # one per shard so that shards sharing an output folder do not overwrite each other's.
    name = "summary.json" if shard.count == 1 else (
        f"summary.shard-{shard.index}-of-{shard.count}.json")
    summary = args.summary or (None if grand_challenge else output / name)
    return Settings(
        input=GC_INPUT if grand_challenge else args.input,
        output=output,
        grand_challenge=grand_challenge,
        organelles=organelles,
        weights=args.weights,
        shard=shard,
        summary=summary,
    )


def check_folders(settings: Settings) -> None:
    """The input must be a folder; the output folder must be writable (or creatable).

    Nothing is created: a run that stops at a later configuration error leaves no trace.

    Raises
    ------
    ConfigError
        Naming the folder and the problem.
    """
    if not settings.input.is_dir():
        raise ConfigError(f"input folder {settings.input} does not exist")
    existing = settings.output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output folder {settings.output} is not writable "
                          f"({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {settings.output} is not writable "
                          f"(no write permission on {existing})")


def load_manifest(
    weights: Path, organelles: tuple[Organelle, ...] | None = None,
    modality: Modality | None = None,
) -> Any:
    """Load ``weights/manifest.json``, or a bioimage.io package as a one-model manifest.

    ``organelles``/``modality``: what the command line says, for packages that do not. A
    broken manifest or package is a configuration error.
    """
    from lightmycells.engine import bioimageio_source, manifest

    try:
        if bioimageio_source.is_package(weights):
            return bioimageio_source.load(
                weights, organelles=organelles, modality=modality)
        return manifest.load(weights)
    except (manifest.ManifestError, OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None  # names the manifest or model file already


def load_models(settings: Settings, args: argparse.Namespace) -> tuple[Any, Settings]:
    """The manifest, and the settings with a package's organelles when none were asked for.

    A bioimage.io package serves the organelles it names; without ``--organelles`` the run
    predicts those (not all four, which would fail on every image).
    """
    from lightmycells.engine import bioimageio_source

    explicit = args.organelles != ",".join(ORGANELLES)
    manifest = load_manifest(settings.weights, settings.organelles if explicit else None,
                             args.modality)
    if explicit or not isinstance(manifest, bioimageio_source.PackageManifest):
        return manifest, settings
    return manifest, replace(settings, organelles=bioimageio_source.served_organelles(manifest))


def discover_inputs(settings: Settings) -> Discovery:
    """Search the input folder, never this run's output folders; none found is an error.

    The output folder may lie inside the input folder, or be it: its organelle folders are
    excluded so that a second run does not take the first run's predictions as inputs.

    Raises
    ------
    ConfigError
        When the folder holds no TIFF at all (a wrong path, not a failed image).
    """
    outputs = [settings.output / "images" / o.output_folder for o in ORGANELLES]
    discovery = discover(settings.input, exclude=outputs)
    if not discovery.jobs and not discovery.failures:
        targets = (f" ({discovery.skipped_targets} ground-truth files such as "
                   f"image_1_Nucleus.ome.tiff skipped)" if discovery.skipped_targets else "")
        raise ConfigError(f"no .tif/.tiff input images found under {discovery.root}{targets}")
    return discovery


def check_routes(manifest: Any) -> int:
    """Print the routing table, one row per pixel-size range; 2 when a pair has no model.

    0 when every organelle × modality pair has a model for some pixel size. A pair whose
    models all serve pixel-size ranges is not missing, but its ``other`` row says ``-``:
    images without a pixel size, or with one outside the ranges, fail (said under the table).
    """
    from lightmycells.engine.manifest import format_routing_table

    rows = manifest.routing_table(ORGANELLES, MODALITIES)
    print(format_routing_table(rows), flush=True)
    partial = [f"{r.organelle}/{r.modality}" for r in rows if r.model is None and not r.missing]
    if partial:
        print(f"note: {len(partial)} route(s) serve only pixel sizes in their ranges; images "
              f"without a pixel size or outside them fail: {', '.join(partial)}", flush=True)
    missing = [f"{r.organelle}/{r.modality}" for r in rows if r.missing]
    if missing:
        print(f"error: {len(missing)} missing route(s): {', '.join(missing)}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK
