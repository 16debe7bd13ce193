"""The run loop: this shard's inputs through a processor, one outcome each, then a summary.

The processor is any callable ``process(source, outputs) -> result`` whose result has
``seconds`` and ``describe()`` (``process.Processor`` in the container, a plain function in
tests); an exception from it fails that input only. ``--resume`` skips inputs whose outputs
all exist and read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightmycells.io import ome
from lightmycells.io.inputs import Discovery, Job
from lightmycells.run.runlog import FAILED, SKIPPED, WRITTEN, Outcome, RunLog
from lightmycells.run.shard import Shard
from lightmycells.vocab import Organelle

Process = Callable[[Path, Mapping[Organelle, Path]], Any]
#: Exit codes (DESIGN.md): all written, some inputs failed, bad usage or configuration.
EXIT_OK, EXIT_FAILURES, EXIT_CONFIG = 0, 1, 2


def has_valid_outputs(outputs: Mapping[Organelle, Path]) -> bool:
    """True when every output exists and reads back as an image, all of one shape.

    A file cut short by a killed container fails to read and is redone.
    """
    shapes = set()
    for path in outputs.values():
        if not path.is_file():
            return False
        try:
            array, _ = ome.read(path)
        except (ome.ImageError, OSError):
            return False
        shapes.add(array.shape)
    return len(shapes) == 1


def run(
    discovery: Discovery,
    process: Process,
    *,
    output: Path,
    organelles: tuple[Organelle, ...],
    shard: Shard | None = None,
    resume: bool = False,
    summary_path: Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> int:
    """Process this shard's inputs; return the exit code (0 all written or skipped, 1 failures).

    Parameters
    ----------
    discovery:
        All inputs of the run (every shard sees the same list).
    process:
        Called once per input with its output paths.
    output:
        Output root (Grand-Challenge layout below it).
    organelles:
        Organelles to write, in order.
    shard:
        Which part of the inputs this process handles (None: all).
    resume:
        Skip inputs whose outputs are already valid.
    summary_path:
        Where to write the summary JSON, or None.
    settings:
        Extra fields for the summary (device, weights …).
    """
    shard = shard or Shard()
    output.mkdir(parents=True, exist_ok=True)
    jobs = shard.select(discovery.jobs)
    failures = shard.select(discovery.failures)  # collisions and unreadable entries
    found = len(discovery.jobs) + len(discovery.failures)
    log = RunLog(
        total=len(jobs) + len(failures),
        root=discovery.root,
        settings={
            "found": found, "layout": discovery.layout, "input": str(discovery.root),
            "output": str(output), "skipped_targets": discovery.skipped_targets,
            "shard": str(shard), "organelles": [o.value for o in organelles],
            **(settings or {}),
        },
    )
    print(f"lightmycells: {found} input(s) under {discovery.root} ({discovery.layout} layout); "
          f"shard {shard}: {log.total}; organelles {','.join(organelles)}", flush=True)
    for source, problem in failures:
        log.add(Outcome(source, FAILED, detail=problem))
    for job in jobs:
        log.add(_one(job, process, output, organelles, resume))
    log.finish(summary_path)
    return EXIT_FAILURES if log.count(FAILED) else EXIT_OK


def _one(job: Job, process: Process, output: Path, organelles: tuple[Organelle, ...],
         resume: bool) -> Outcome:
    outputs = job.outputs(output, organelles)
    started = time.perf_counter()
    if resume and has_valid_outputs(outputs):
        return Outcome(job.source, SKIPPED, detail="outputs exist and read back")
    try:
        result = process(job.source, outputs)
    except Exception as exc:  # one bad image must not stop a run over thousands
        return Outcome(job.source, FAILED, time.perf_counter() - started, _one_line(exc))
    return Outcome(job.source, WRITTEN, result.seconds, result.describe())


def _one_line(exc: Exception) -> str:
    """The error's first line; unexpected error types are named so bugs stay recognisable."""
    from lightmycells.engine.manifest import RouteError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ome.ImageError | RouteError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
