"""``python -m lightmycells.evaluate``: score predictions, write the metrics JSON and a report.

``--pred DIR`` (or ``--baseline input|blur``) against ``--truth DIR``, written to ``--out``;
``--floors input,blur`` also scores those baselines (each written as ``OUT.<name>.json``) so
``--report DIR`` shows them beside the model; ``--compare A.json B.json`` prints a
side-by-side table instead. Modality, ``image_z`` and ``best_z`` come from ``best_z.csv``
(``--best-z``, or ``TRUTH/best_z.csv``), else the modality from the input's metadata and
``image_z`` from the name (``_z<k>``).

Exit codes: 0 all scored; 1 some images failed (each failure on one line, the rest written);
2 bad usage (nothing written).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lightmycells.cpus import available_cpus
from lightmycells.eval import report
from lightmycells.eval.errors import EvaluationError
from lightmycells.eval.evaluate import Evaluation, run
from lightmycells.eval.official import JSON_INDENT
from lightmycells.eval.sources import BASELINES
from lightmycells.io import atomic
from lightmycells.vocab import INPUT_FOLDER, Organelle, parse_organelles

PROG = "python -m lightmycells.evaluate"


def build_parser() -> argparse.ArgumentParser:
    """The command line (separate so tests can parse without running)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score predictions against ground truth with the Light My Cells metrics; "
                    "write the official metrics JSON and, optionally, a report.")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--truth", type=Path, help="ground truth (Grand-Challenge or study layout)")
    what.add_argument("--pred", type=Path, help="predictions (Grand-Challenge output layout)")
    what.add_argument("--baseline", choices=[s.value for s in BASELINES],
                      help="score a baseline instead of --pred: the input image, or its blur")
    what.add_argument("--floors", default="",
                      help="baselines to score beside the predictions for the report, "
                           "e.g. input,blur (each also written as OUT.<name>.json)")
    what.add_argument("--best-z", type=Path,
                      help="name,modality,image_z,best_z CSV (default: TRUTH/best_z.csv)")
    what.add_argument("--input", type=Path, dest="input_dir",
                      help="transmitted-light inputs, when the Grand-Challenge truth folder "
                           "does not hold images/" + INPUT_FOLDER)
    what.add_argument("--organelles", type=_organelles,
                      help="score only these, comma-separated (default: every organelle with "
                           "ground truth), e.g. the one a single-model run predicted")
    what.add_argument("--only-predicted", action="store_true",
                      help="evaluate only images with at least one prediction file")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="metrics JSON (or, with --compare, a .md)")
    output.add_argument("--report", type=Path, help="folder for report.md, plots and gallery")
    output.add_argument("--compare", type=Path, nargs=2, metavar=("A.json", "B.json"),
                        help="print a side-by-side table of two metrics JSONs and stop")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--jobs", type=int, default=None,
                           help="worker processes (default: the CPUs this process may use, "
                                "affinity and cgroup quota included)")
    run_group.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _organelles(text: str) -> tuple[Organelle, ...]:
    try:
        return parse_organelles(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 some images failed, 2 usage)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(args.compare, args.out)
    if args.truth is None or args.out is None:
        parser.error("--truth and --out are required (or --compare A.json B.json)")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1 (got {args.jobs})")
    floors = [f.strip() for f in args.floors.split(",") if f.strip()]
    try:
        evaluation = run(args.truth, args.pred, baseline=args.baseline, floors=floors,
                         best_z=args.best_z, input_dir=args.input_dir,
                         only_predicted=args.only_predicted, organelles=args.organelles,
                         jobs=args.jobs or available_cpus(), progress=not args.quiet)
    except EvaluationError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    _write(evaluation, args.out, args.report, command=f"{PROG} {shlex.join(argv)}")
    _summarise(evaluation, args.out, args.report)
    return 1 if evaluation.errors else 0


def _write(evaluation: Evaluation, out: Path, report_dir: Path | None, *, command: str) -> None:
    """The primary JSON at ``out``, each floor's beside it, and the report if asked for."""
    atomic.write_json(out, evaluation.primary_json(), indent=JSON_INDENT)
    for source, data in evaluation.metrics.items():
        if source != evaluation.primary:
            atomic.write_json(out.with_suffix(f".{source}.json"), data, indent=JSON_INDENT)
    if report_dir is not None:
        report.write_report(report_dir, evaluation, command=command)


def _summarise(evaluation: Evaluation, out: Path, report_dir: Path | None) -> None:
    """Failures and counts on stderr, the mean table on stdout."""
    errors = evaluation.errors
    for line in errors:
        print(f"FAILED {line}", file=sys.stderr)
    scored = sum(len(r.scores[evaluation.primary]) for r in evaluation.results)
    print(f"evaluate: {len(evaluation.items)} images, {scored} image/organelle pairs scored, "
          f"{len(errors)} failed; wrote {out}"
          + (f" and {report_dir / report.REPORT_NAME}" if report_dir else ""),
          file=sys.stderr)
    print(report.summary_table(evaluation.metrics[evaluation.primary]))


def compare_labels(a: Path, b: Path) -> list[str]:
    """Column names for two metrics files: their stems, else where their paths differ.

    Two ``metrics.json`` are named by the first folder that differs (``runs/old/eval/…`` vs
    ``runs/new/eval/…`` → ``old``, ``new``).
    """
    if a.stem != b.stem:
        return [a.stem, b.stem]
    pa, pb = Path(a).resolve().parts, Path(b).resolve().parts
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            return [x, y]
    return [str(a), str(b)]


def _compare(paths: Sequence[Path], out: Path | None) -> int:
    documents = []
    for path in paths:
        try:
            documents.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            print(f"evaluate: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    a, b = documents
    table = report.compare_table(a, b, labels=compare_labels(*paths))
    if out is not None:
        atomic.write_text(out, table + "\n")
    print(table)
    return 0
