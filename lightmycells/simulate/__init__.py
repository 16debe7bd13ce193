"""The simulated microscope: Light My Cells-shaped studies with known ground truth.

Pieces, from the specimen to the files:

* :func:`make_scene` — cells, nuclei, mitochondria, microtubules, actin in µm → :class:`Scene`;
* :func:`expected_fluorescence` / :func:`render_fluorescence` — scene → fluorescence ground truth;
* :func:`transmitted_planes` — scene → noise-free BF / PC / DIC planes at any defocus;
* :func:`sample_study` / :func:`render_fov` — one study's microscope and one field of view;
* :func:`make_dataset` — studies written in the real data's layout (``python -m
  lightmycells.simulate``);
* :func:`noisy_pair` — two independent noisy renderings of one ground truth (ceilings).
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
from lightmycells.simulate.scene import CellParams, Scene, make_scene
from lightmycells.simulate.study import (
    REAL_SIZES,
    Fov,
    Study,
    choose_labels,
    render_fov,
    sample_study,
)

__all__ = [
    "BEST_Z_CSV", "REAL_SIZES", "Camera", "CellParams", "Fluorescence", "Fov", "Optics",
    "Scene", "Study", "choose_labels", "expected_fluorescence", "illumination", "make_dataset",
    "make_scene", "modality_filter", "noisy_pair", "render_fluorescence", "render_fov",
    "sample_study", "study_for", "transmitted_planes",
]
