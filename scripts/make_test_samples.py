"""Make the sample inputs (test/input) and their expected outputs (test/expected_output).

Inputs come from the project's simulated microscope, in the Grand-Challenge layout: one image
per modality, one with odd dimensions, one smaller than a model tile, one named by a UUID as
Grand Challenge names its files (so its modality comes from the OME-XML alone). Expected
outputs are what ``inference.py`` writes for them with the weights in ``weights/`` on the CPU.

    python -m scripts.make_test_samples                  # inputs and expected outputs
    python -m scripts.make_test_samples --expected-only  # after new weights: outputs only

Run from the repository root (``-m`` puts it on the import path). Rerunnable: both folders
are rebuilt from scratch; the inputs are a pure function of the seed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import inference
from lightmycells.engine.manifest import MANIFEST_NAME, sha256_file
from lightmycells.simulate.dataset import make_dataset
from lightmycells.vocab import INPUT_FOLDER

REPO = Path(__file__).resolve().parents[1]

SEED = 2024
#: (modality, (Y, X), name or None for the simulator's own name)
SAMPLES = (
    ("BF", (256, 256), None),
    ("PC", (235, 171), None),  # odd in both dimensions
    ("DIC", (96, 120), None),  # smaller than a model tile in both directions
    ("BF", (128, 144), "uuid"),  # Grand Challenge renames uploads to UUIDs
)
#: Expected outputs record which weights made them (outside images/, so test.sh ignores it).
WEIGHTS_STAMP = "weights.sha256"
MAX_BYTES = 3_000_000


def make_inputs(test_dir: Path) -> list[Path]:
    """Simulate the samples into ``test_dir/input`` (rebuilt); return the written files."""
    folder = test_dir / "input" / "images" / INPUT_FOLDER
    shutil.rmtree(test_dir / "input", ignore_errors=True)
    folder.mkdir(parents=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (modality, size, naming) in enumerate(SAMPLES):
            out = Path(tmp) / str(index)
            make_dataset(out, studies=1, fovs=1, seed=SEED + index, size=size,
                         modalities=[modality], planes=1, progress=False)
            (source,) = (out / "Study_1").glob(f"image_1_{modality}_z0.ome.tiff")
            name = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"lightmycells-sample-{index}"))
                    if naming == "uuid" else f"sample{index + 1}_{modality}_z0")
            written.append(shutil.copyfile(source, folder / f"{name}.tiff"))
    return written


def make_expected(test_dir: Path, weights: Path) -> None:
    """Run the inference on ``test_dir/input`` (CPU) into ``test_dir/expected_output``."""
    expected = test_dir / "expected_output"
    with tempfile.TemporaryDirectory() as tmp:
        code = inference.main(["--input", str(test_dir / "input"), "--output", tmp,
                               "--weights", str(weights), "--device", "cpu"], {})
        if code != 0:
            raise SystemExit(f"inference failed with exit code {code}; expected outputs not made")
        shutil.rmtree(expected, ignore_errors=True)
        expected.mkdir(parents=True)
        shutil.copytree(Path(tmp) / "images", expected / "images")
    (expected / WEIGHTS_STAMP).write_text(sha256_file(weights / MANIFEST_NAME) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-dir", type=Path, default=REPO / "test")
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--expected-only", action="store_true",
                        help="keep test/input, only remake test/expected_output")
    args = parser.parse_args()
    if not args.expected_only:
        for path in make_inputs(args.test_dir):
            print(f"input {path.relative_to(args.test_dir)} ({path.stat().st_size} bytes)")
    if (args.weights / MANIFEST_NAME).is_file():
        make_expected(args.test_dir, args.weights)
    elif args.expected_only:
        print(f"error: no {args.weights / MANIFEST_NAME}; nothing to make outputs with",
              file=sys.stderr)
        return 1
    else:
        print(f"note: no {args.weights / MANIFEST_NAME} yet, so no expected outputs; rerun "
              f"with --expected-only once the weights are there")
    total = sum(p.stat().st_size for p in args.test_dir.rglob("*") if p.is_file())
    print(f"test/: {total / 1e6:.2f} MB in total")
    if total > MAX_BYTES:
        print(f"error: the samples exceed {MAX_BYTES / 1e6:.0f} MB; make them smaller",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
