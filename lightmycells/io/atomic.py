"""Write files through a temporary name and a rename.

No half-written file is ever left under its final name: a crash, a full disk or a kill
mid-write leaves at most a hidden ``.<name>.<pid>.tmp``, removed on the way out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is removed whether the block succeeds or raises.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | Path, data: Mapping[str, Any], *, indent: int = 2) -> Path:
    """Write ``data`` as JSON atomically (NaN written as ``NaN``, as Python's json does)."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
