"""The run loop: this shard's inputs through a processor, one outcome each, then a summary.

The processor is any callable ``process(source, outputs) -> result`` whose result has
``seconds`` and ``describe()`` (``process.Processor`` in the container, a plain function in
tests); an exception from it fails that input only. Before the first input, temporaries a
killed run left for this shard's files are removed. With ``records`` (batch mode) each
finished input gets a record (``lightmycells.run.record``) and ``--resume`` skips an input
only when its record matches. SIGTERM stops the run after rolling back the current input
(``lightmycells.run.stop``). With ``pipelined`` (the container sets it on CUDA only), a
processor with ``load``/``compute``/``write`` stages (``process.Processor``) reads the next
input and writes the previous one on background threads while the current one computes
(``lightmycells.run.pipeline``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lightmycells.io import atomic, ome
from lightmycells.io.inputs import Discovery, Job
from lightmycells.run import pipeline, record
from lightmycells.run.runlog import FAILED, SKIPPED, WRITTEN, Outcome, RunLog
from lightmycells.run.shard import Shard
from lightmycells.run.stop import EXIT_TERMINATED, Terminated, sigterm_raises
from lightmycells.vocab import ORGANELLES, Organelle

Process = Callable[[Path, Mapping[Organelle, Path]], Any]
#: Exit codes (DESIGN.md): all written, some inputs failed, bad usage or configuration;
#: stopped by SIGTERM is 143.
EXIT_OK, EXIT_FAILURES, EXIT_CONFIG = 0, 1, 2


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
    records: Mapping[str, Any] | None = None,
    pipelined: bool = True,
) -> int:
    """Process this shard's inputs; return the exit code (0, 1, or 143 after SIGTERM).

    0: all written or skipped; 1: some inputs failed; 143: stopped by SIGTERM.

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
        Skip inputs whose record matches ``records`` and whose outputs are the recorded ones.
    summary_path:
        Where to write the summary JSON, or None.
    settings:
        Extra fields for the summary (device, weights …).
    records:
        The settings that change pixels, written into each input's record (None: write no
        records, as in Grand-Challenge mode; ``--resume`` then redoes every input).
    pipelined:
        Overlap reading and writing with computing (``lightmycells.run.pipeline``) when
        ``process`` has the three stages; False (or a plain callable) runs one input at a
        time on this thread.
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
    removed = remove_leftovers(output, jobs, summary_path)
    if removed:
        print(f"lightmycells: removed {removed} temporary file(s) left under {output} by an "
              f"interrupted run", flush=True)
    for source, problem in failures:
        log.add(Outcome(source, FAILED, detail=problem))
    tasks = (_begin(job, output, organelles, resume, records) for job in jobs)
    pipe = pipeline.Pipeline(process) if pipelined and isinstance(process, pipeline.Stages) \
        else None
    current: list[Path] = []
    try:
        with sigterm_raises():
            if pipe is not None:
                pipe.run(tasks, log.add)
            else:
                for task in tasks:
                    current = [task.source]
                    log.add(_one(task, process))
    except Terminated:
        log.settings = {**log.settings, "terminated": True}
        log.finish(summary_path)
        names = ", ".join(map(str, pipe.rolled_back if pipe is not None else current)) or "none"
        print(f"stopped by SIGTERM: {len(log.outcomes)} of {log.total} input(s) done, the one(s) "
              f"in progress ({names}) rolled back; rerun with --resume to continue",
              file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    log.finish(summary_path)
    return EXIT_FAILURES if log.count(FAILED) else EXIT_OK


def remove_leftovers(output: Path, jobs: Iterable[Job], summary_path: Path | None) -> int:
    """Remove temporaries a killed run left for this shard's files; return how many.

    Only temporaries of files this shard owns (its inputs' outputs and records, its
    summary) are touched: shards sharing an output folder may be writing theirs right now.
    """
    owned = {summary_path} if summary_path is not None else set()
    for job in jobs:
        owned.update(job.outputs(output, ORGANELLES).values())
        owned.add(record.path(output, job))
    folders = [output / "images", output / record.RECORD_FOLDER]
    found = [tmp for folder in folders for tmp, final in atomic.leftovers(folder)
             if final in owned]
    if summary_path is not None:
        found += [tmp for tmp in summary_path.parent.glob(f".{summary_path.name}.*")
                  if atomic.final_name(tmp) == summary_path]
    for tmp in found:
        tmp.unlink(missing_ok=True)
    return len(found)


def _begin(job: Job, output: Path, organelles: tuple[Organelle, ...], resume: bool,
           records: Mapping[str, Any] | None) -> Outcome | pipeline.Task:
    """The input's outcome if ``--resume`` keeps it, else the task of (re)making it.

    The task's ``finish`` writes the input's record once its outputs are all written.
    """
    outputs = job.outputs(output, organelles)
    record_path = record.path(output, job)
    redo = ""
    if resume:
        why = ("no records in Grand-Challenge mode" if records is None
               else record.why_redo(record_path, records, job.source, outputs))
        if why is None:
            return Outcome(job.source, SKIPPED, detail="record matches; outputs kept")
        if record_path.exists() or any(p.exists() for p in outputs.values()):
            redo = f"redone: {why}  "  # (inputs never written before are just written)

    def finish(result: Any) -> Outcome:
        if records is not None:
            record.write(record_path, records, job.source, outputs)
        return Outcome(job.source, WRITTEN, result.seconds, redo + result.describe())

    def fail(exc: Exception, seconds: float) -> Outcome:
        return Outcome(job.source, FAILED, seconds, _one_line(exc))

    try:  # no record may vouch for an output set that is being rewritten
        record_path.unlink(missing_ok=True)
    except OSError as exc:
        return fail(exc, 0.0)
    return pipeline.Task(job.source, outputs, finish, fail)


def _one(task: Outcome | pipeline.Task, process: Process) -> Outcome:
    """Process one task on this thread (the run without overlap)."""
    if isinstance(task, Outcome):
        return task
    started = time.perf_counter()
    try:
        return task.finish(process(task.source, task.outputs))
    except Exception as exc:  # one bad image must not stop a run over thousands
        return task.fail(exc, time.perf_counter() - started)


def _one_line(exc: Exception) -> str:
    """The error's first line; unexpected error types are named so bugs stay recognisable."""
    from lightmycells.engine.manifest import RouteError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ome.ImageError | RouteError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
