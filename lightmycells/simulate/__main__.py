"""``python -m lightmycells.simulate``: write simulated Light My Cells studies."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _size(values: list[int]) -> tuple[int, int]:
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def build_parser() -> argparse.ArgumentParser:
    """The command line (kept separate so tests can parse without running)."""
    parser = argparse.ArgumentParser(
        prog="python -m lightmycells.simulate",
        description="Simulate Light My Cells studies: BF/PC/DIC z-stacks and organelle "
                    "fluorescence ground truth, in the real data's layout.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--studies", type=int, default=3, help="number of studies (default 3)")
    parser.add_argument("--fovs", type=int, default=4, help="fields of view per study (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, nargs="+", metavar="N",
                        help="image size: H W, or N for N×N (default: a real size per study)")
    parser.add_argument("--size-scale", type=float, default=1.0,
                        help="scale of the drawn real sizes when --size is not given")
    parser.add_argument("--gc", action="store_true",
                        help="also write the Grand-Challenge layout under OUT/images")
    parser.add_argument("--modalities", default="BF,PC,DIC",
                        help="modalities the studies take in turn (default BF,PC,DIC)")
    parser.add_argument("--planes", type=int,
                        help="z-planes per field of view (default: drawn per study)")
    parser.add_argument("--all-labels", action="store_true",
                        help="label every field of view with every allowed organelle but one")
    parser.add_argument("--preset", default="clean",
                        help="clean (default: the original microscope, same data for every "
                             "seed as before) or realistic (real instruments' artefacts)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the exit code (0 written, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size is not None and len(args.size) > 2:
        parser.error(f"--size takes N or H W (got {len(args.size)} numbers)")
    from lightmycells.simulate.dataset import make_dataset  # heavy imports after the checks

    start = time.perf_counter()
    try:
        folders = make_dataset(
            args.out, studies=args.studies, fovs=args.fovs, seed=args.seed,
            size=_size(args.size) if args.size else None, gc=args.gc,
            modalities=[m for m in args.modalities.split(",") if m.strip()],
            planes=args.planes, size_scale=args.size_scale, all_labels=args.all_labels,
            progress=not args.quiet, preset=args.preset)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"wrote {len(folders)} studies × {args.fovs} fields of view to {args.out} "
          f"in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
