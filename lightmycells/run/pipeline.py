"""A batch run that keeps the processor busy: read ahead and write behind on two threads.

While the main thread computes image *i*, one background thread writes image *i − 1*'s
outputs and another reads and decodes image *i + 1*. At most ``depth`` images (default 2)
are in flight at once, counted from the start of their read to the end of their write, so
memory stays bounded: the reader waits for a free slot before it reads, which on a run
where computing is the slow part means it reads *i + 1* right after *i − 1* is written.

Outcomes are handed on in input order. What the run's guarantees need:

- all or none: a write runs ``process.write_all`` on the writer thread, which removes what
  it wrote if it fails;
- SIGTERM (``lightmycells.run.stop``) raises in the main thread only. The pipeline then sets
  its ``cancel`` event: the writer stops before its next output and removes what it wrote
  of that image (or, past its last output, finishes it and its record, and it counts as
  done); the reader drops what it read. Nothing in flight is left half-written, and
  :attr:`Pipeline.rolled_back` names the inputs that were started but not finished.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lightmycells.vocab import Organelle

#: Images in flight by default: the one computing and one being read or written.
DEPTH = 2


@runtime_checkable
class Stages(Protocol):
    """A processor split into the three stages the pipeline overlaps (``process.Processor``)."""

    def load(self, source: Path) -> Any:
        """Read and check one input (runs on the reader thread)."""

    def compute(self, loaded: Any) -> Any:
        """Predict a loaded input (runs on the main thread)."""

    def write(self, computed: Any, outputs: Mapping[Organelle, Path],
              cancel: threading.Event | None = None) -> Any:
        """Write all outputs or none; stop before the next output once ``cancel`` is set."""


@dataclass(frozen=True)
class Task:
    """One input to process.

    Attributes
    ----------
    source, outputs:
        The input file and its output paths.
    finish:
        Called on the writer thread once all outputs are written, with the write's result;
        returns the input's outcome (the batch run writes the input's record here).
    fail:
        Turns an exception of any stage (or of ``finish``) and the seconds spent into the
        input's outcome.
    """

    source: Path
    outputs: Mapping[Organelle, Path]
    finish: Callable[[Any], Any]
    fail: Callable[[Exception, float], Any]


class InFlight:
    """Counts images between the start of their read and the end of their write.

    ``peak`` is the most there ever were at once (observable by tests and benchmarks).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be ≥ 1 (got {limit})")
        self.limit, self.count, self.peak = limit, 0, 0
        self._changed = threading.Condition()

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a free slot and take it; False (no slot taken) once ``cancel`` is set."""
        with self._changed:
            self._changed.wait_for(lambda: self.count < self.limit or cancel.is_set())
            if cancel.is_set():
                return False
            self.count += 1
            self.peak = max(self.peak, self.count)
            return True

    def release(self) -> None:
        """Free a slot."""
        with self._changed:
            self.count -= 1
            self._changed.notify_all()

    def wake(self) -> None:
        """Wake waiters so that they see a cancel event."""
        with self._changed:
            self._changed.notify_all()


class _Dropped(Exception):
    """A read called off because the run is stopping."""


class Pipeline:
    """Runs :class:`Task` items through ``stages`` with reading and writing overlapped.

    Parameters
    ----------
    stages:
        The processor (:class:`Stages`).
    depth:
        Images in flight at most (≥ 1; 1 leaves the threads nothing to overlap).
    """

    def __init__(self, stages: Stages, *, depth: int = DEPTH) -> None:
        self.stages = stages
        self.in_flight = InFlight(depth)
        self.cancel = threading.Event()
        #: Inputs started but neither finished nor failed when the run was stopped.
        self.rolled_back: list[Path] = []
        self._open: dict[Path, None] = {}  # started, outcome not handed on yet (ordered)

    def run(self, items: Iterable[Task | Any], add: Callable[[Any], None]) -> None:
        """Process every item and call ``add`` with each outcome, in input order.

        An item that is not a :class:`Task` is an outcome already (an input skipped by
        ``--resume``) and is handed on in its place. An exception of one input's stage
        fails that input only. Anything else raised in the main thread (SIGTERM's
        ``Terminated``, KeyboardInterrupt) stops the run: in-flight writes are cancelled
        and rolled back, finished ones still handed on, then the exception propagates.
        """
        with ThreadPoolExecutor(1, "lmc-read") as reader, \
                ThreadPoolExecutor(1, "lmc-write") as writer:
            pending: deque[Any] = deque()  # outcomes and write futures, in input order
            try:
                self._loop(iter(items), reader, writer, pending, add)
            except BaseException:
                self.cancel.set()
                self.in_flight.wake()
                self._hand_on(pending, add, wait=True)
                self.rolled_back = list(self._open)
                raise
            self._hand_on(pending, add, wait=True)

    def _loop(self, items: Any, reader: ThreadPoolExecutor, writer: ThreadPoolExecutor,
              pending: deque[Any], add: Callable[[Any], None]) -> None:
        ahead = self._read_next(items, reader, pending)
        while ahead is not None:
            task, loading, started = ahead
            ahead = self._read_next(items, reader, pending)  # queued behind this read
            try:  # one bad image must not stop the run: its failure is its outcome
                loaded = loading.result()  # a failed read has freed its slot already
            except Exception as exc:
                pending.append(task.fail(exc, time.perf_counter() - started))
            else:
                try:
                    computed = self.stages.compute(loaded)
                except Exception as exc:
                    self.in_flight.release()
                    pending.append(task.fail(exc, time.perf_counter() - started))
                else:  # the writer frees the slot
                    pending.append(writer.submit(self._write, task, computed, started))
            self._hand_on(pending, add, wait=False)

    def _read_next(self, items: Any, reader: ThreadPoolExecutor,
                   pending: deque[Any]) -> tuple[Task, Future, float] | None:
        """Submit the next task's read; outcomes met on the way are queued in order."""
        for item in items:
            if not isinstance(item, Task):
                pending.append(item)
                continue
            self._open[item.source] = None
            return item, reader.submit(self._load, item.source), time.perf_counter()
        return None

    def _load(self, source: Path) -> Any:
        if not self.in_flight.acquire(self.cancel):
            raise _Dropped("the run is stopping")
        try:
            return self.stages.load(source)
        except BaseException:
            self.in_flight.release()
            raise

    def _write(self, task: Task, computed: Any, started: float) -> Any:
        """Write, then finish; a failure is the input's outcome, unless the run is stopping."""
        try:
            result = self.stages.write(computed, task.outputs, self.cancel)
            return task.finish(result)
        except Exception as exc:
            if self.cancel.is_set():  # called off (or failed) while stopping: rolled back
                raise
            return task.fail(exc, time.perf_counter() - started)
        finally:
            self.in_flight.release()

    def _hand_on(self, pending: deque[Any], add: Callable[[Any], None], *, wait: bool) -> None:
        """Hand on outcomes in order: those ready now, or all of them when ``wait``."""
        while pending:
            head = pending[0]
            if isinstance(head, Future):
                if not (wait or head.done()):
                    return
                if head.exception() is not None:  # cancelled: rolled back, no outcome
                    pending.popleft()
                    continue
                head = head.result()
            pending.popleft()
            self._open.pop(head.source, None)
            add(head)
