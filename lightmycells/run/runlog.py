"""What a run tells its user: one line per image, a progress bar, and a summary.

Log lines go to stdout (one per image, readable in ``docker logs``/``kubectl logs`` where no
progress bar is drawn, so each line carries its own count and ETA); failures go to stderr as
``FAILED <file>: <problem>``. The summary is printed and, in batch mode, written to
``OUT/summary.json`` through a temporary name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lightmycells.io import atomic

#: Outcomes of one input.
WRITTEN, SKIPPED, FAILED = "written", "skipped", "failed"


@dataclass
class Outcome:
    """What happened to one input.

    Attributes
    ----------
    source:
        The input file.
    status:
        ``"written"``, ``"skipped"`` (``--resume`` found a matching record) or ``"failed"``.
    seconds:
        Wall time spent on this input.
    detail:
        For written inputs, the log fields (modality, size, routes); for failures, the
        one-line problem.
    """

    source: Path
    status: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RunLog:
    """Collects outcomes, prints a line for each and summarises the run.

    Parameters
    ----------
    total:
        Number of inputs this run will handle (its shard).
    settings:
        Effective settings echoed into the summary (device, organelles, shard, weights …).
    root:
        Inputs are shown relative to this folder in log lines (failure lines show the path).
    out, err:
        Streams for log lines and failure lines (default: ``sys.stdout``/``sys.stderr`` at
        the time of the run).
    progress:
        Draw a tqdm bar (on ``err``) when that stream is a terminal.
    """

    total: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    root: Path | None = None
    out: TextIO | None = None
    err: TextIO | None = None
    progress: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self._out = self.out or sys.stdout
        self._err = self.err or sys.stderr
        self._bar: Any = None
        if self.progress and self.total > 1 and self._err.isatty():
            from tqdm import tqdm  # only when a terminal can show it

            self._bar = tqdm(total=self.total, file=self._err, unit="image", leave=False)

    def add(self, outcome: Outcome) -> None:
        """Record one outcome and print its line."""
        self.outcomes.append(outcome)
        done = len(self.outcomes)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (self.total - done)
        prefix = f"[{done}/{self.total} ETA {_clock(eta)}]"
        if outcome.status == FAILED:
            self._print(f"{prefix} FAILED {outcome.source}: {outcome.detail}", self._err)
        else:
            self._print(f"{prefix} {outcome.status} {self._shown(outcome.source)}  "
                        f"{outcome.detail}  {outcome.seconds:.2f} s", self._out)
        if self._bar is not None:
            self._bar.update(1)

    def _shown(self, source: Path) -> str:
        if self.root is not None and source.is_relative_to(self.root):
            return source.relative_to(self.root).as_posix()
        return source.name

    def _print(self, line: str, stream: TextIO) -> None:
        if self._bar is not None:
            self._bar.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def count(self, status: str) -> int:
        """Number of inputs with ``status``."""
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        """Counts, failures, throughput and the run's settings, JSON-ready."""
        seconds = time.perf_counter() - self.started
        written = self.count(WRITTEN)
        return {
            "total": self.total,
            "written": written,
            "skipped": self.count(SKIPPED),
            "failed": self.count(FAILED),
            "failures": [{"input": str(o.source), "error": o.detail}
                         for o in self.outcomes if o.status == FAILED],
            "seconds": round(seconds, 3),
            "images_per_minute": round(60.0 * written / seconds, 2) if seconds > 0 else 0.0,
            **self.settings,
        }

    def finish(self, json_path: Path | None = None) -> dict[str, Any]:
        """Close the bar, print the summary line, optionally write it as JSON; return it."""
        if self._bar is not None:
            self._bar.close()
        summary = self.summary()
        print(f"done: {summary['written']} written, {summary['skipped']} skipped, "
              f"{summary['failed']} failed of {summary['total']} in {summary['seconds']:.1f} s "
              f"({summary['images_per_minute']:.1f} images/min)", file=self._out, flush=True)
        if json_path is not None:
            atomic.write_json(json_path, summary)
        return summary


def _clock(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` style duration."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
