"""Make the sample inputs (test/input) and their expected outputs (test/expected_output).

Inputs come from the project's simulated microscope, in the Grand-Challenge layout: one image
per modality, one with odd dimensions, one smaller than a model tile, one named by a UUID as
Grand Challenge names its files (so its modality comes from the OME-XML alone), and one tall
enough that the shipped weights (patch 256: tiles of at most 4 × 256 = 1024 pixels a side)
predict it in two tiles blended across a seam. Expected
outputs are what ``inference.py`` writes for them with the weights in ``weights/`` on the CPU.

    python -m scripts.make_test_samples                  # inputs and expected outputs
    python -m scripts.make_test_samples --expected-only  # after new weights: outputs only

Run from the repository root (``-m`` puts it on the import path). Rerunnable: both folders
end up holding exactly the files made now; the inputs are a pure function of the seed.
tifffile stamps a fresh random UUID into every OME-TIFF, so a file whose pixels and metadata
are unchanged is left as it was: regenerating with the same weights changes nothing in git.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import tifffile

import inference
from lightmycells.engine.manifest import MANIFEST_NAME, sha256_file
from lightmycells.simulate.dataset import make_dataset
from lightmycells.vocab import INPUT_FOLDER

REPO = Path(__file__).resolve().parents[1]

SEED = 2024
#: (modality, (Y, X), name or None for the simulator's own name, simulator seed)
SAMPLES = (
    ("BF", (256, 256), None, SEED),
    ("PC", (235, 171), None, SEED + 1),  # odd in both dimensions
    ("DIC", (96, 120), None, SEED + 2),  # smaller than a model tile in both directions
    ("BF", (128, 144), "uuid", SEED + 3),  # Grand Challenge renames uploads to UUIDs
    # Taller than the largest planned tile (1024 for patch 256) in every model's grid, so each
    # shipped model blends it from several tiles along Y. Models trained at a pixel size see
    # it resampled: at its 0.159 µm pixels (seed 2031, the first after 2028 to draw one above
    # 0.148 µm) it is 1272 rows at the nucleus model's 0.16 µm and 2035 at the others' 0.1 µm.
    # Two tiles along X as well would need > 1024 columns, and four float32 outputs of 1025²
    # are 16.8 MB, beyond what test/ should hold (MAX_BYTES). 1280 rows fill the written TIFF
    # tiles (256 rows each) with no padding rows.
    ("BF", (1280, 256), None, SEED + 7),
)
#: Expected outputs record which weights made them (outside images/, so test.sh ignores it).
WEIGHTS_STAMP = "weights.sha256"
#: test/ holds at most this much: it is copied into the container image and into every clone.
MAX_BYTES = 10_000_000


#: The random part of an OME-TIFF: ``UUID="urn:uuid:<36 characters>"``.
_OME_UUID = re.compile(r"urn:uuid:[0-9a-f-]{36}")


def same_image(a: Path, b: Path) -> bool:
    """Whether two TIFFs hold the same pixels and the same OME-XML apart from its UUID.

    How the pixels are laid out in the file (TIFF tile size, compression) does not count: an
    older writer's tiling of the same image is the same sample.
    """
    with tifffile.TiffFile(a) as ta, tifffile.TiffFile(b) as tb:
        xml_a, xml_b = (_OME_UUID.sub("", t.ome_metadata or "") for t in (ta, tb))
        return xml_a == xml_b and np.array_equal(ta.asarray(), tb.asarray(), equal_nan=True)


def sync(made: Path, dest: Path) -> list[Path]:
    """Make ``dest`` hold exactly the files of ``made``; return those added or changed.

    A file whose image is the same as its old version's (:func:`same_image`) keeps the old
    bytes.
    """
    changed = []
    for old in sorted(p for p in dest.rglob("*") if p.is_file()):
        if not (made / old.relative_to(dest)).is_file():
            old.unlink()
    for new in sorted(p for p in made.rglob("*") if p.is_file()):
        target = dest / new.relative_to(made)
        if target.is_file() and same_image(new, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        changed.append(shutil.copyfile(new, target))
    return changed


def make_inputs(test_dir: Path) -> list[Path]:
    """Simulate the samples into ``test_dir/input``; return the files added or changed."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "input" / "images" / INPUT_FOLDER
        folder.mkdir(parents=True)
        for index, (modality, size, naming, seed) in enumerate(SAMPLES):
            out = Path(tmp) / str(index)
            make_dataset(out, studies=1, fovs=1, seed=seed, size=size,
                         modalities=[modality], planes=1, progress=False)
            (source,) = (out / "Study_1").glob(f"image_1_{modality}_z0.ome.tiff")
            name = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"lightmycells-sample-{index}"))
                    if naming == "uuid" else f"sample{index + 1}_{modality}_z0")
            shutil.copyfile(source, folder / f"{name}.tiff")
        return sync(Path(tmp) / "input", test_dir / "input")


def make_expected(test_dir: Path, weights: Path) -> list[Path]:
    """Run the inference on ``test_dir/input`` (CPU) into ``test_dir/expected_output``.

    Returns the output files added or changed.
    """
    expected = test_dir / "expected_output"
    with tempfile.TemporaryDirectory() as tmp:
        code = inference.main(["--input", str(test_dir / "input"), "--output", tmp,
                               "--weights", str(weights), "--device", "cpu"], {})
        if code != 0:
            raise SystemExit(f"inference failed with exit code {code}; expected outputs not made")
        changed = sync(Path(tmp) / "images", expected / "images")
    (expected / WEIGHTS_STAMP).write_text(sha256_file(weights / MANIFEST_NAME) + "\n")
    return changed


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
        for path in make_expected(args.test_dir, args.weights):
            print(f"output {path.relative_to(args.test_dir)} ({path.stat().st_size} bytes)")
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
