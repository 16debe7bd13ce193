"""Light My Cells inference: BF/PC/DIC OME-TIFFs in, organelle fluorescence OME-TIFFs out.

``python inference.py`` runs in Grand-Challenge mode (``/input`` → ``/output``);
``python inference.py --input IN --output OUT [...]`` runs in batch mode; ``--help`` lists
the options. Exit codes: 0 all written, 1 some inputs failed, 2 bad usage or configuration
(a model that does not load or run included), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightmycells.run import allocator, batch, cli

WEIGHTS = Path(__file__).resolve().parent / "weights"


def main(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Check everything that needs no model, then import ONNX Runtime and run."""
    args = cli.build_parser(WEIGHTS).parse_args(argv)  # exits 2 on bad usage
    try:
        settings = cli.settings_from(args, env)
        manifest, settings = cli.load_models(settings, args)
        if args.check:
            return cli.check_routes(manifest)
        cli.check_folders(settings)
        discovery = cli.discover_inputs(settings)
        import process  # ONNX Runtime comes in only now that the arguments are valid

        allocator.keep_large_blocks()  # each image's big arrays reuse the last one's memory

        try:
            processor, device = process.build(
                manifest, settings.organelles, device=args.device, threads=args.threads,
                tta=args.tta, batch_size=args.batch_size, overlap=args.overlap,
                resample=not args.no_resample, zstack=args.zstack,
                modality=args.modality,  # a Modality already (cli parses it)
                pixel_size_um=args.pixel_size,
                images=len(settings.shard.select(discovery.jobs)),
            )
        except (RuntimeError, ValueError) as exc:  # the device, or a model failing its test run
            raise cli.ConfigError(str(exc)) from None
    except cli.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return batch.EXIT_CONFIG
    records = None if settings.grand_challenge else pixel_settings(
        args, manifest, processor.predictor.runtime)
    return batch.run(
        discovery, processor, output=settings.output, organelles=settings.organelles,
        shard=settings.shard, resume=args.resume, summary_path=settings.summary,
        settings={"device": device, "weights": str(settings.weights), "tta": args.tta,
                  "batch_size": processor.predictor.batch_size,
                  "cudnn_search": str(processor.predictor.runtime.search)},
        records=records,
        # Overlap reading and writing with the model only when the model runs on a GPU: on
        # the CPU, ONNX Runtime already uses every core and the read/write threads take them
        # from it (2 cores: pipelined 0.81 x compute-only vs sequential 0.85, docs/BENCHMARKS.md).
        pipelined=device == "cuda",
    )


def pixel_settings(args: argparse.Namespace, manifest: Any, runtime: Any) -> dict[str, Any]:
    """What changes an output's pixels; ``--resume`` redoes an input when any of it changed.

    The manifest's fingerprint covers every model file (entries carry their sha256), the
    engine's output revision every change of the engine's own arithmetic.
    Threads, batch size and CPU vs CUDA in fp32 change pixels only by float rounding, so
    they are left out; the float16 variants on CUDA are not rounding, so precision is in.
    """
    import process
    from lightmycells.engine import OUTPUT_REVISION
    return {
        "engine_revision": OUTPUT_REVISION,
        "manifest_sha256": manifest.fingerprint(),
        "tta": args.tta,
        "overlap": args.overlap,
        "resample": not args.no_resample,
        "zstack": args.zstack,
        "modality": str(args.modality) if args.modality else None,
        "pixel_size_um": list(args.pixel_size) if args.pixel_size else None,
        "precision": process.precision(runtime),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
