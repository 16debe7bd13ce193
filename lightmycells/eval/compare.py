"""Compare an output folder with expected outputs: ``test.sh`` and ``tests/test_samples.py``.

Both folders hold the Grand-Challenge output layout. The check is the same wherever the
outputs were made: the same files, each the same shape, float32, with the same pixel size,
and the same image up to the float differences between machines (CPU vs. GPU kernels, an
fp16 model variant on the GPU): Pearson r >= ``MIN_PCC`` and a mean absolute difference of
at most ``MAX_MAE`` of the expected image's 2–99.8 percentile range (the scale the official
evaluation looks at).

``python -m lightmycells.eval.compare ACTUAL EXPECTED`` prints one line per problem and exits 1
if there is any.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lightmycells.io import ome

#: Agreement an output must reach with its expected image.
MIN_PCC = 0.999
MAX_MAE = 0.01


def output_files(root: Path) -> list[Path]:
    """The TIFFs under ``root/images``, relative to ``root`` (hidden temporaries excluded)."""
    return sorted(
        p.relative_to(root) for p in (root / "images").rglob("*.tif*")
        if p.is_file() and not p.name.startswith(".")
    )


def compare_image(actual: Path, expected: Path) -> str | None:
    """The problem with ``actual`` against ``expected``, or None when they agree."""
    try:
        got, got_meta = ome.read(actual)
    except ome.ImageError as exc:
        return f"unreadable ({exc})"
    want, want_meta = ome.read(expected)
    if got.shape != want.shape or got.dtype != np.float32:
        return f"shape {got.shape} {got.dtype}, expected {want.shape} float32"
    if got_meta.pixel_size_um is None or want_meta.pixel_size_um is None:
        if got_meta.pixel_size_um != want_meta.pixel_size_um:
            return f"pixel size {got_meta.pixel_size_um}, expected {want_meta.pixel_size_um}"
    elif not np.allclose(got_meta.pixel_size_um, want_meta.pixel_size_um, rtol=1e-6):
        return f"pixel size {got_meta.pixel_size_um}, expected {want_meta.pixel_size_um}"
    got64, want64 = got.astype(np.float64).ravel(), want.astype(np.float64).ravel()
    low, high = np.percentile(want64, [2.0, 99.8])
    spread = max(high - low, 1e-12)
    mae = float(np.mean(np.abs(got64 - want64))) / spread
    pcc = 1.0 if np.ptp(want64) == 0 and np.ptp(got64) == 0 else float(
        np.corrcoef(got64, want64)[0, 1])
    if not (pcc >= MIN_PCC and mae <= MAX_MAE):
        return f"differs: Pearson r {pcc:.5f} (need >= {MIN_PCC}), mean |diff| {mae:.4f} of " \
               f"the range (need <= {MAX_MAE})"
    return None


def compare_folders(actual: Path, expected: Path) -> list[str]:
    """Every problem of ``actual`` against ``expected``, one line each (empty: they agree)."""
    want = output_files(expected)
    if not want:
        return [f"no expected outputs under {expected / 'images'}"]
    got = set(output_files(actual))
    problems = [f"{name}: missing" for name in want if name not in got]
    problems += [f"{name}: not expected" for name in sorted(got - set(want))]
    for name in want:
        if name in got:
            problem = compare_image(actual / name, expected / name)
            if problem:
                problems.append(f"{name}: {problem}")
    return problems


def main(argv: list[str]) -> int:
    """``python -m lightmycells.eval.compare ACTUAL EXPECTED``: 0 when they agree, else 1."""
    if len(argv) != 2:
        print("usage: python -m lightmycells.eval.compare ACTUAL_OUTPUT EXPECTED_OUTPUT",
              file=sys.stderr)
        return 2
    actual, expected = (Path(a) for a in argv)
    problems = compare_folders(actual, expected)
    for line in problems:
        print(f"MISMATCH {line}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s): {actual} does not match {expected}")
        return 1
    print(f"all {len(output_files(expected))} expected outputs match ({actual} vs {expected})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
