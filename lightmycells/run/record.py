"""What ``--resume`` trusts: a small record beside each input's output set.

After an input's outputs are all written, ``OUT/.lightmycells/<key>.json`` records what made
them: the manifest's sha256 (which names every model file's sha256), the engine's output
revision, the settings that change pixels, the organelles written, the input's size and
modification time, and each output's size. ``--resume`` skips an input only when its record
matches this run and its outputs are still the files the record describes; otherwise it
says why and redoes it. The record is removed before an input is redone, so a run killed
half-way through rewriting an output set leaves no record claiming the mixed files.

Settings that do not change pixels (device CPU vs CUDA in fp32, threads, batch size, shard)
are left out, so moving a run between machines does not redo it. Grand-Challenge mode
keeps no records (``/output`` holds nothing but the outputs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightmycells.io import atomic
from lightmycells.io.inputs import Job
from lightmycells.vocab import Organelle

#: Folder under the output root holding the records (hidden: never taken as input).
RECORD_FOLDER = ".lightmycells"
RECORD_FORMAT = 1


def path(output: Path, job: Job) -> Path:
    """Where ``job``'s record lives: ``OUT/.lightmycells/<key>.json``."""
    return output / RECORD_FOLDER / job.key.with_name(job.key.name + ".json")


def _input_state(source: Path) -> dict[str, int]:
    stat = os.stat(source)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write(record_path: Path, settings: Mapping[str, Any], source: Path,
          outputs: Mapping[Organelle, Path]) -> None:
    """Record that ``outputs`` were made from ``source`` with ``settings`` (atomically)."""
    atomic.write_json(record_path, {
        "format": RECORD_FORMAT,
        "settings": dict(settings),
        "organelles": [o.value for o in outputs],
        "input": {"path": str(source), **_input_state(source)},
        "outputs": {o.value: p.stat().st_size for o, p in outputs.items()},
    })


def why_redo(record_path: Path, settings: Mapping[str, Any], source: Path,
             outputs: Mapping[Organelle, Path]) -> str | None:
    """None when the recorded output set can be kept, else the reason to redo it (one line)."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no record of how its outputs were made (older run, or killed mid-image)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"unreadable record {record_path.name} ({type(exc).__name__})"
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return f"record format is not {RECORD_FORMAT}"
    return (_changed_settings(record.get("settings", {}), settings)
            or _changed_input(record.get("input", {}), source)
            or _changed_outputs(record, outputs))


def _changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    changes = [f"{key} {old.get(key)!r} -> {value!r}" for key, value in new.items()
               if old.get(key) != value]
    if not changes:
        return None
    if "manifest_sha256" in new and old.get("manifest_sha256") != new["manifest_sha256"]:
        return f"weights changed (manifest sha256 {str(old.get('manifest_sha256'))[:12]} -> " \
               f"{str(new['manifest_sha256'])[:12]})"
    if "engine_revision" in new and old.get("engine_revision") != new["engine_revision"]:
        return (f"made by another engine revision ({old.get('engine_revision', 1)} -> "
                f"{new['engine_revision']}: its outputs differ)")
    return "settings changed: " + ", ".join(changes)


def _changed_input(old: Mapping[str, Any], source: Path) -> str | None:
    try:
        now = _input_state(source)
    except OSError as exc:  # gone since discovery: processing it names the problem
        return f"input cannot be examined ({type(exc).__name__})"
    if {k: old.get(k) for k in now} == now:
        return None
    return (f"input changed (size {old.get('size')} -> {now['size']}, "
            f"mtime_ns {old.get('mtime_ns')} -> {now['mtime_ns']})")


def _changed_outputs(record: Mapping[str, Any], outputs: Mapping[Organelle, Path]) -> str | None:
    recorded: Sequence[str] = record.get("organelles", [])
    sizes: Mapping[str, int] = record.get("outputs", {})
    missing = [o.value for o in outputs if o.value not in recorded]
    if missing:
        return f"no recorded output for {', '.join(missing)}"
    for organelle, output in outputs.items():
        if not output.is_file():
            return f"output {organelle.value} is missing"
        if output.stat().st_size != sizes.get(organelle.value):
            return f"output {organelle.value} is not the recorded file (size differs)"
    return None
