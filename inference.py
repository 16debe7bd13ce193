"""Light My Cells inference: BF/PC/DIC OME-TIFFs in, organelle fluorescence OME-TIFFs out.

``python inference.py`` runs in Grand-Challenge mode (``/input`` → ``/output``);
``python inference.py --input IN --output OUT [...]`` runs in batch mode; ``--help`` lists
the options. Exit codes: 0 all written, 1 some inputs failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lightmycells.run import batch, cli
from lightmycells.vocab import Modality

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

        try:
            processor, device = process.build(
                manifest, settings.organelles, device=args.device, threads=args.threads,
                tta=args.tta, batch_size=args.batch_size, overlap=args.overlap,
                resample=not args.no_resample, zstack=args.zstack,
                modality=Modality(args.modality) if args.modality else None,
            )
        except (RuntimeError, ValueError) as exc:
            raise cli.ConfigError(f"device {args.device}: {exc}") from None
    except cli.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return batch.EXIT_CONFIG
    return batch.run(
        discovery, processor, output=settings.output, organelles=settings.organelles,
        shard=settings.shard, resume=args.resume, summary_path=settings.summary,
        settings={"device": device, "weights": str(settings.weights), "tta": args.tta},
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
