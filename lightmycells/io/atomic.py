"""Write files through a temporary name and a rename.

No half-written file is ever left under its final name: a crash, a full disk or an
exception mid-write leaves nothing; only a SIGKILL (or a power cut) can leave the hidden
temporary ``.<name>.<token>.lmc-tmp`` behind. The token is random, not the process id
(which is 1 for every container's entry point), so two writers never share a temporary;
the ``.lmc-tmp`` marker lets :func:`leftovers` find what a killed run left and name the
file it was meant to become.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Suffix every temporary name ends with.
TMP_MARKER = ".lmc-tmp"
_TOKEN_HEX = 12
_TMP_NAME = re.compile(rf"^\.(?P<final>.+)\.[0-9a-f]{{{_TOKEN_HEX}}}{re.escape(TMP_MARKER)}$")


def temporary_name(path: str | Path) -> Path:
    """A fresh hidden temporary path beside ``path``: ``.<name>.<random hex>.lmc-tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(_TOKEN_HEX // 2)}{TMP_MARKER}")


def final_name(tmp: str | Path) -> Path | None:
    """The file a temporary name stands for (None when ``tmp`` is no temporary name)."""
    tmp = Path(tmp)
    match = _TMP_NAME.match(tmp.name)
    return tmp.with_name(match.group("final")) if match else None


def leftovers(folder: str | Path) -> Iterator[tuple[Path, Path]]:
    """``(temporary, final)`` for every temporary name under ``folder`` (recursively)."""
    for parent, _, files in os.walk(folder):
        for name in files:
            if name.endswith(TMP_MARKER):
                tmp = Path(parent) / name
                final = final_name(tmp)
                if final is not None:
                    yield tmp, final


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is removed whether the block succeeds or raises.
    """
    path = Path(path)
    tmp = temporary_name(path)
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
