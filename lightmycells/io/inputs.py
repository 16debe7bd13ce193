"""Find the input images of a run and name their outputs.

Two input layouts are accepted: the Grand-Challenge one
(``IN/images/organelles-transmitted-light-ome-tiff/<name>.tif[f]``) and any folder of TIFFs,
searched recursively. Outputs always follow the Grand-Challenge output layout,
``OUT/images/<organelle>-fluorescence-ome-tiff/<relative folder>/<name>.tiff``, where the
relative folder is the input's folder below the search root (empty in the Grand-Challenge
layout), so study folders full of ``image_1_BF_z0.ome.tiff`` files never collide.
Two inputs that would still write the same output (``a.tif`` beside ``a.ome.tiff``) are
both reported as failures instead of one silently overwriting the other; so are entries that
cannot be inputs although they look like ones (a dangling link, a folder named ``x.tiff``, a
file without read permission) and folders that cannot be searched: a run never skips a
possible input in silence.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lightmycells.io.layout import TARGET_NAME
from lightmycells.io.ome import TIFF_SUFFIXES, stem
from lightmycells.vocab import INPUT_FOLDER, Organelle

#: Suffix of every written output.
OUTPUT_SUFFIX = ".tiff"


@dataclass(frozen=True)
class Job:
    """One input image and where its predictions go.

    Attributes
    ----------
    source:
        The input TIFF.
    key:
        Output path relative to an organelle folder, e.g. ``Study_1/image_1_BF_z0.tiff``.
    """

    source: Path
    key: Path

    def output(self, out_root: Path, organelle: Organelle) -> Path:
        """Path of this input's prediction for ``organelle`` under ``out_root``."""
        return out_root / "images" / organelle.output_folder / self.key

    def outputs(self, out_root: Path, organelles: Iterable[Organelle]) -> dict[Organelle, Path]:
        """Paths of this input's predictions, one per organelle."""
        return {organelle: self.output(out_root, organelle) for organelle in organelles}


@dataclass
class Discovery:
    """The result of searching an input folder.

    Attributes
    ----------
    root:
        The folder that was searched (the Grand-Challenge input folder when present).
    layout:
        ``"grand-challenge"`` or ``"folder"``.
    jobs:
        Inputs to process, sorted by output key.
    collisions:
        Inputs that would write the same output, with the message saying which.
    unreadable:
        Entries that look like inputs but cannot be read (dangling link, folder named
        ``*.tiff``, no read permission) and folders that cannot be searched, with the reason.
    skipped_targets:
        Ground-truth files (``_Nucleus.ome.tiff`` …) that were not treated as inputs.
    """

    root: Path
    layout: str
    jobs: list[Job] = field(default_factory=list)
    collisions: list[tuple[Path, str]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    skipped_targets: int = 0

    @property
    def failures(self) -> list[tuple[Path, str]]:
        """Every entry that fails before any processing, with its one-line reason."""
        return sorted(self.collisions + self.unreadable)


def is_input_name(relative: Path) -> bool:
    """True for ``.tif``/``.tiff`` names (any case) outside hidden files and folders.

    Hidden names are temporaries (``atomic``'s ``.name.<token>.lmc-tmp``) or tool folders
    (``OUT/.lightmycells`` records).
    """
    return relative.suffix.lower() in TIFF_SUFFIXES and not any(
        part.startswith(".") for part in relative.parts
    )


def discover(input_root: Path, *, exclude: Sequence[Path] = ()) -> Discovery:
    """List the input images under ``input_root`` and their output keys.

    Parameters
    ----------
    input_root:
        Either a Grand-Challenge input folder (containing ``images/<INPUT_FOLDER>``) or any
        folder of TIFFs, searched recursively.
    exclude:
        Folders not to search (the output folder, when it sits inside the input folder).
    """
    gc_folder = input_root / "images" / INPUT_FOLDER
    layout = "grand-challenge" if gc_folder.is_dir() else "folder"
    root = gc_folder if layout == "grand-challenge" else input_root
    result = Discovery(root=root, layout=layout)
    found = []
    for path, problem in _entries(root, [e.resolve() for e in exclude]):
        if problem is None:
            found.append(path)
        else:
            result.unreadable.append((path, problem))
    targets = [p for p in found if TARGET_NAME.match(p.name)]
    result.skipped_targets = len(targets)
    by_key: dict[Path, list[Path]] = defaultdict(list)
    for path in found:
        if not TARGET_NAME.match(path.name):
            by_key[path.relative_to(root).parent / (stem(path) + OUTPUT_SUFFIX)].append(path)
    for key, sources in sorted(by_key.items()):
        if len(sources) == 1:
            result.jobs.append(Job(source=sources[0], key=key))
            continue
        for source in sources:
            others = ", ".join(s.name for s in sources if s != source)
            result.collisions.append(
                (source, f"would write the same output {key} as {others}")
            )
    return result


def _entries(root: Path, excluded: Sequence[Path]) -> list[tuple[Path, str | None]]:
    """Every input-named entry below ``root`` and every folder that cannot be searched, sorted.

    ``(path, None)`` for a readable file, ``(path, reason)`` for anything else.
    Links to files are followed, links to folders are not (as ``Path.rglob`` does); hidden
    and excluded folders are not entered.
    """
    problems: list[tuple[Path, str | None]] = []

    def unsearchable(error: OSError) -> None:
        reason = error.strerror or type(error).__name__
        problems.append((Path(error.filename), f"folder cannot be searched ({reason}); "
                                               f"any images in it were not processed"))

    def outside(path: Path) -> bool:
        return not any(path.resolve().is_relative_to(e) for e in excluded)

    found: list[tuple[Path, str | None]] = []
    for folder, dirs, files in os.walk(root, onerror=unsearchable):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".") and outside(here / d)]
        for name in files + [d for d in dirs if is_input_name(Path(d))]:
            path = here / name
            if is_input_name(path.relative_to(root)) and outside(path):
                found.append((path, _entry_problem(path)))
    return sorted(found + problems, key=lambda item: item[0])


def _entry_problem(path: Path) -> str | None:
    """Why an input-named entry cannot be read as an input, or None when it can."""
    try:
        mode = path.stat().st_mode  # follows links
    except FileNotFoundError:
        target = os.readlink(path) if path.is_symlink() else "?"
        return f"dangling link (to {target}, which does not exist)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None
