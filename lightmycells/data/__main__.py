"""``python -m lightmycells.data fetch|index|pack|status``: the real data, archive to store."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lightmycells.data import fetch as fetch_mod
from lightmycells.data.index import build_index, write_index
from lightmycells.data.pack import PackError, pack
from lightmycells.data.status import status_lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lightmycells.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    jobs = max(1, min(16, os.cpu_count() or 1))

    f = sub.add_parser("fetch", help="download studies of S-BIAD1047 (resumable)")
    f.add_argument("--dest", default="data/S-BIAD1047", help="download folder")
    f.add_argument("--studies", nargs="*", default=None,
                   help="study numbers (default: all 30)")
    f.add_argument("--base-url", default=fetch_mod.DEFAULT_BASE_URL)
    f.add_argument("--manifest", default=None,
                   help="TSV path/URL with path, size[, md5]; default: the organisers' lists")
    f.add_argument("--jobs", type=int, default=8, help="parallel transfers")
    f.add_argument("--retries", type=int, default=5)
    f.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    f.add_argument("--backoff", type=float, default=1.0, help="first retry delay, seconds")
    f.add_argument("--no-progress", action="store_true")

    i = sub.add_parser("index", help="report quirks, count, write ROOT/lmc_index.json")
    i.add_argument("root")
    i.add_argument("--out", default=None, help="index file (default ROOT/lmc_index.json)")
    i.add_argument("--jobs", type=int, default=jobs)
    i.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("pack", help="write the chunked store training reads (resumable)")
    p.add_argument("root")
    p.add_argument("--out", required=True, help="store folder")
    p.add_argument("--index", default=None, help="index file (default ROOT/lmc_index.json)")
    p.add_argument("--jobs", type=int, default=jobs)
    p.add_argument("--limit", type=int, default=None,
                   help="pack at most this many planes now (resume later)")
    p.add_argument("--exclude-studies", nargs="*", default=[], metavar="N",
                   help="study numbers kept out of the store (a held-out test set)")
    p.add_argument("--pixel-um", type=float, default=None, metavar="UM",
                   help="store the planes resampled to this pixel size (training at "
                   "data.resample_um UM then reads them as fast as stored pixels)")
    p.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("status", help="what is downloaded, indexed and packed (dry runs)")
    s.add_argument("--dest", default="data/S-BIAD1047")
    s.add_argument("--store", default=None)
    s.add_argument("--studies", nargs="*", default=None)
    return parser


def _fetch(args: argparse.Namespace) -> int:
    try:
        remotes = (fetch_mod.read_manifest(args.manifest, args.studies) if args.manifest
                   else fetch_mod.from_lists(args.studies))
    except (fetch_mod.FetchError, ValueError) as exc:
        print(f"fetch: {exc}", file=sys.stderr)
        return 2
    print(f"fetch: {len(remotes)} files from {args.base_url} into {args.dest}")
    summary = fetch_mod.fetch(args.base_url, args.dest, remotes, jobs=args.jobs,
                              retries=args.retries, timeout=args.timeout,
                              backoff=args.backoff, progress=not args.no_progress)
    if args.manifest is None:
        fetch_mod.write_list(args.dest)
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def _index(args: argparse.Namespace) -> int:
    result = build_index(args.root, jobs=args.jobs, progress=not args.no_progress)
    print("\n".join(result.report()))
    path = write_index(args.root, result, args.out)
    print(f"index: wrote {path}")
    if not any(f["targets"] for f in result.fovs):
        print(f"index: nothing usable under {args.root} (no field of view with an input "
              f"plane and a target)", file=sys.stderr)
        return 1
    return 0


def _pack(args: argparse.Namespace) -> int:
    try:
        summary = pack(args.root, args.out, index_path=args.index, jobs=args.jobs,
                       progress=not args.no_progress, limit=args.limit,
                       exclude_studies=[f"Study_{int(n)}" for n in args.exclude_studies],
                       pixel_um=args.pixel_um)
    except (PackError, ValueError) as exc:
        print(f"pack: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    for problem in summary.failed.values():
        print(f"pack: FAILED {problem}")
    if summary.failed:
        print(f"pack: {args.out} is not complete: fix or re-index those files, then rerun "
              f"(the packed planes are kept)", file=sys.stderr)
        return 1
    if summary.skipped + summary.packed < summary.planes:
        print(f"pack: stopped early (--limit); rerun to finish {args.out}")
    else:
        print(f"pack: store complete: {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "status":
        print("\n".join(status_lines(args.dest, args.store, args.studies)))
        return 0
    return {"fetch": _fetch, "index": _index, "pack": _pack}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
