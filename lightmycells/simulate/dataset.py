"""Write simulated studies in the real data's layout (and optionally Grand Challenge's).

Layout under ``out``::

    best_z.csv                                   name,modality,image_z,best_z (all studies)
    Study_<n>/image_<ID>_<BF|PC|DIC>_z<k>.ome.tiff   one file per plane, k = 0 … planes−1
    Study_<n>/image_<ID>_<Organelle.title>.ome.tiff  ground truth at best focus (uint16)
    images/organelles-transmitted-light-ome-tiff/image_<ID>_<M>_z<k>.tiff     (--gc)
    images/<organelle>-fluorescence-ome-tiff/image_<ID>_<M>_z<k>.tiff         (--gc)

IDs are unique over the whole dataset (``ID = (n−1)·fovs + f + 1``), so a file name alone
identifies a plane and ``best_z.csv`` can list every study in one table. Everything is a pure
function of ``seed``: study ``n`` draws from ``[seed, n]`` and its field of view ``f`` from
``[seed, n, f]``, so a study renders the same whatever else is asked for.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightmycells.io import ome
from lightmycells.io.atomic import replacing
from lightmycells.io.layout import BEST_Z_COLUMNS, BEST_Z_FILE, input_stem, target_stem
from lightmycells.simulate.presets import Preset
from lightmycells.simulate.study import (
    Fov,
    Study,
    choose_labels,
    modality_cycle,
    render_fov,
    sample_study,
)
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Modality

BEST_Z_CSV = BEST_Z_FILE


def study_for(seed: int, index: int, modality: Modality, *, size=None, planes=None,
              size_scale: float = 1.0, preset: Preset | str = Preset.CLEAN) -> Study:
    """The deterministic study ``index`` (1-based) of the dataset drawn with ``seed``."""
    return sample_study(np.random.default_rng([seed, index]), index, modality, size=size,
                        planes=planes, size_scale=size_scale, preset=preset)


def make_dataset(
    out: Path,
    *,
    studies: int,
    fovs: int,
    seed: int,
    size: tuple[int, int] | None = None,
    gc: bool = False,
    modalities: Sequence[Modality | str] | None = None,
    planes: int | None = None,
    size_scale: float = 1.0,
    all_labels: bool = False,
    progress: bool = True,
    preset: Preset | str = Preset.CLEAN,
) -> list[Path]:
    """Simulate ``studies`` × ``fovs`` fields of view and write them under ``out``.

    Parameters
    ----------
    out:
        Output folder (created; existing files of the same names are replaced).
    studies, fovs:
        Number of studies and of fields of view per study.
    seed:
        Everything is a pure function of it.
    size:
        ``(Y, X)`` for every image; default: a real size per study times ``size_scale``.
    gc:
        Also write the Grand-Challenge layout under ``out/images``.
    modalities:
        Modalities the studies take in turn (default BF, PC, DIC).
    planes:
        z-planes per field of view (default: drawn per study, 1–11).
    size_scale:
        Scale of the drawn real sizes when ``size`` is not given.
    all_labels:
        Label every field of view with every organelle its modality allows, except that none
        gets all four (the real data has none) — for demos; default: realistic partial labels.
    progress:
        Show a progress bar on stderr.
    preset:
        ``clean`` (default: the original microscope, byte-identical for every seed) or
        ``realistic`` (real instruments' artefacts, cell types and pixel sizes 0.06–0.65 µm).

    Returns
    -------
    list[Path]
        The study folders, in order.
    """
    out = Path(out)
    if studies < 1 or fovs < 1:
        raise ValueError(f"studies and fovs must be ≥ 1 (got {studies} and {fovs})")
    if size is not None and min(size) < 16:
        raise ValueError(f"size must be at least 16×16 pixels (got {size[0]}×{size[1]})")
    if planes is not None and planes < 1:
        raise ValueError(f"planes must be ≥ 1 (got {planes})")
    cycle = modality_cycle(modalities)
    if str(preset) not in set(Preset):
        raise ValueError(f"unknown preset '{preset}' (expected {' or '.join(Preset)})")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, int, int]] = []
    folders: list[Path] = []
    bar = tqdm(total=studies * fovs, desc="simulate", unit="fov", disable=not progress)
    for n in range(1, studies + 1):
        study = study_for(seed, n, cycle[(n - 1) % len(cycle)], size=size, planes=planes,
                          size_scale=size_scale, preset=preset)
        folder = out / f"Study_{n}"
        folder.mkdir(exist_ok=True)
        folders.append(folder)
        for f in range(fovs):
            rng = np.random.default_rng([seed, n, f])
            labels = choose_labels(rng, study.modality,
                                   dict.fromkeys(ORGANELLES, 1.0) if all_labels else None)
            fov = render_fov(rng, study, labels)
            image_id = (n - 1) * fovs + f + 1
            rows += write_fov(out, folder, image_id, study, fov, gc=gc)
            bar.update()
    bar.close()
    _write_csv(out / BEST_Z_CSV, rows)
    return folders


def write_fov(out: Path, folder: Path, image_id: int, study: Study, fov: Fov, *,
              gc: bool) -> list[tuple[str, str, int, int]]:
    """Write one field of view; return its ``best_z.csv`` rows."""
    ps = (study.pixel_size_um, study.pixel_size_um)
    modality = study.modality.value
    targets = {o: ome.write(folder / f"{target_stem(image_id, o)}.ome.tiff", image,
                            channel=o.title, pixel_size_um=ps)
               for o, image in fov.targets.items()}
    rows = []
    for k, plane in enumerate(fov.planes):
        name = input_stem(image_id, modality, k)
        path = ome.write(folder / f"{name}.ome.tiff", plane, channel=modality, pixel_size_um=ps)
        rows.append((name, modality, k, fov.best_z))
        if gc:
            _copy(path, out / "images" / INPUT_FOLDER / f"{name}.tiff")
            for organelle, target in targets.items():
                _copy(target, out / "images" / organelle.output_folder / f"{name}.tiff")
    return rows


def _copy(src: Path, dst: Path) -> None:
    """Copy through a temporary name, so no half-written file carries the final name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)


def _write_csv(path: Path, rows: list[tuple[str, str, int, int]]) -> None:
    with replacing(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(BEST_Z_COLUMNS)
        writer.writerows(rows)
