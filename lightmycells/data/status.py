"""What a data folder and a store hold, for dry runs: listed vs present, index, store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from lightmycells.data import catalog
from lightmycells.data.index import INDEX_FILE
from lightmycells.data.pack import DONE_NAME
from lightmycells.data.store import INDEX_NAME


def _present(dest: Path, study: catalog.StudyInfo) -> tuple[int, int]:
    folder = dest / study.name
    if not folder.is_dir():
        return 0, 0
    names = set(dict.fromkeys(study.rows))
    found = [p for p in folder.iterdir() if p.name in names]
    return len(found), sum(p.stat().st_size for p in found)


def status_lines(dest: str | Path, store: str | Path | None,
                 studies: Sequence[int | str] | None = None) -> list[str]:
    """Human lines: per study listed/present files, the index's counts, the store's state."""
    dest = Path(dest)
    chosen = catalog.select(studies)
    lines, total_files, total_bytes, listed = [], 0, 0, 0
    for study in chosen:
        files, size = _present(dest, study)
        unique = len(set(study.rows))
        listed += unique
        total_files += files
        total_bytes += size
        if files:
            lines.append(f"  {study.name}: {files}/{unique} files, {size / 1e9:.2f} GB "
                         f"({study.pixel_nm:g} nm)")
    lines.insert(0, f"data {dest}: {total_files} of {listed} listed files present "
                    f"({total_bytes / 1e9:.2f} GB) in {sum(1 for _ in lines)} of "
                    f"{len(chosen)} studies")
    index = dest / INDEX_FILE
    if index.exists():
        counts = json.loads(index.read_text()).get("counts", {})
        total = counts.get("total", {})
        lines.append(f"index {index}: {total.get('fovs', 0)} usable fields of view, "
                     f"{total.get('planes', 0)} planes; by organelle {counts.get('organelle')}")
    else:
        lines.append(f"index {index}: not written yet")
    if store is not None:
        store = Path(store)
        if (store / INDEX_NAME).exists():
            data = json.loads((store / INDEX_NAME).read_text())
            lines.append(f"store {store}: complete, {len(data['fovs'])} fields of view "
                         f"(held out: {', '.join(data.get('excluded_studies', [])) or 'none'})")
        elif (store / DONE_NAME).exists():
            done = (store / DONE_NAME).read_text().count("\n")
            lines.append(f"store {store}: partial, {done} planes packed (pack resumes)")
        else:
            lines.append(f"store {store}: not written yet")
    probe = dest if dest.exists() else Path(".")
    lines.append(f"free disk at {probe}: {shutil.disk_usage(probe).free / 1e9:.0f} GB")
    return lines
