"""``python -m lightmycells.train --config CONFIG.yaml [--set key.sub=value ...]``.

Also under ``torchrun --nproc_per_node N -m lightmycells.train --config ...`` (DDP).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, validate the config, train; exit 2 on a bad config."""
    parser = argparse.ArgumentParser(prog="python -m lightmycells.train",
                                     description="Train a model from a YAML config.")
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key, e.g. steps=100")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="optimisation steps (the same as --set steps=N)")
    args = parser.parse_args(argv)
    if args.steps is not None:
        args.overrides.append(f"steps={args.steps}")

    from lightmycells.train.config import ConfigError, dump_config, load_config
    from lightmycells.train.data import DataError

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dump_config(cfg), flush=True)

    from lightmycells.train.loop import train  # torch only once the config is valid

    try:
        result = train(cfg)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    print(f"[train] done: step {result.step}, stopped by {result.stopped}, "
          f"best validation score {best}, run folder {result.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
