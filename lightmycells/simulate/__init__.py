"""The simulated microscope: Light My Cells-shaped studies with known ground truth.

Pieces, from the specimen to the files:

* :func:`make_scene` — cells, nuclei, mitochondria, microtubules, actin in µm → :class:`Scene`;
* :func:`expected_fluorescence` / :func:`render_fluorescence` — scene → fluorescence ground truth;
* :func:`transmitted_planes` — scene → noise-free BF / PC / DIC planes at any defocus;
* :func:`sample_study` / :func:`render_fov` — one study's microscope and one field of view;
* :func:`make_dataset` — studies written in the real data's layout (``python -m
  lightmycells.simulate``);
* :func:`noisy_pair` — two independent noisy renderings of one ground truth (ceilings);
* :class:`Preset` — ``clean`` (the original microscope, byte-identical per seed) or
  ``realistic`` (:class:`Realism`: real instruments' artefacts, cell types, 10×–100×).
"""

from lightmycells.simulate.camera import Camera, illumination
from lightmycells.simulate.dataset import BEST_Z_CSV, make_dataset, study_for
from lightmycells.simulate.fluorescence import (
    Fluorescence,
    expected_fluorescence,
    noisy_pair,
    render_fluorescence,
)
from lightmycells.simulate.optics import Optics, modality_filter, transmitted_planes
from lightmycells.simulate.presets import OBJECTIVES, RANGES, Export, Objective, Preset, Realism
from lightmycells.simulate.scene import CellParams, CellType, Scene, make_scene
from lightmycells.simulate.study import (
    REAL_SIZES,
    Fov,
    Study,
    choose_labels,
    render_fov,
    sample_study,
)

__all__ = [
    "BEST_Z_CSV", "OBJECTIVES", "RANGES", "REAL_SIZES", "Camera", "CellParams", "CellType",
    "Export", "Fluorescence", "Fov", "Objective", "Optics", "Preset", "Realism", "Scene", "Study",
    "choose_labels", "expected_fluorescence", "illumination", "make_dataset", "make_scene",
    "modality_filter", "noisy_pair", "render_fluorescence", "render_fov", "sample_study",
    "study_for", "transmitted_planes",
]
