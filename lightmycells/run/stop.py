"""Stopping a run cleanly on SIGTERM, which ``docker stop`` and Kubernetes send first.

While :func:`sigterm_raises` is active, the first SIGTERM raises :class:`Terminated` in the
main thread, wherever it is: the current image's writes unwind (each write goes through a
temporary name that is removed, and outputs already renamed are unlinked), so the image
ends with all of its outputs or none. ``Terminated`` derives from ``BaseException`` so that
the per-image ``except Exception`` of the batch loop does not count it as one failed image.
Later SIGTERMs are ignored: a second signal must not interrupt the rollback of the first.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: Exit status of a run stopped by SIGTERM (128 + 15, what a shell reports for it).
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):  # noqa: N818 - named for the signal, like KeyboardInterrupt
    """SIGTERM arrived while a run was going on."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, the first SIGTERM raises :class:`Terminated`; later ones are ignored.

    Outside the main thread (where Python cannot install signal handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
