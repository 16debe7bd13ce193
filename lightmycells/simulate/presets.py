"""Simulator presets: ``clean`` (the original microscope) and ``realistic`` (real instruments).

``clean`` is the simulator as it always was: sparse cells of one generic shape, pixel sizes
60–162 nm, a mild illumination tilt, an ideal camera. Its output is byte-for-byte what it was
before presets existed, so every seed keeps its data (a hash test guards this).

``realistic`` draws, per study, the things that make real transmitted-light images hard and
that the clean preset leaves out (:class:`Realism`), each over a documented range
(:data:`RANGES`): an objective from the usual magnifications (pixel size 0.06–0.65 µm with
its NA), a cell type and density from sparse to confluent, debris, background texture,
haze, vignetting and illumination gradients, dust shadows, a camera with offset, gain,
fixed-pattern and read noise, and the way the image was exported (raw, 8-bit,
contrast-stretched). The effects themselves are applied by :mod:`.artefacts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from lightmycells.simulate.scene import CellParams, CellType


class Preset(StrEnum):
    """How realistic the simulated microscope is."""

    CLEAN = "clean"
    REALISTIC = "realistic"


class Export(StrEnum):
    """How the transmitted-light image was saved."""

    RAW16 = "raw16"  # the camera's 16-bit counts
    RAW8 = "raw8"  # an 8-bit camera (or an 8-bit save with a fixed scale)
    STRETCH8 = "stretch8"  # auto-contrast burned in, saved as 8 bit (tails clipped)
    STRETCH16 = "stretch16"  # auto-contrast burned in, rescaled to the full 16-bit range


class Objective(NamedTuple):
    """A microscope objective: magnification and numerical aperture (``str``: ``63×/1.4``)."""

    magnification: float
    na: float

    def __str__(self) -> str:
        return f"{self.magnification:g}×/{self.na:g}"


#: Common objectives and how often a study uses each (cell culture imaging).
OBJECTIVES: dict[Objective, float] = {
    Objective(100, 1.4): 0.15,
    Objective(63, 1.4): 0.25,
    Objective(40, 0.95): 0.25,
    Objective(20, 0.75): 0.2,
    Objective(10, 0.3): 0.15,
}
#: Camera pixel pitch (µm): 6.5 µm sCMOS (Hamamatsu Orca, pco.edge) down to 6.0 µm; with the
#: objectives above this gives pixel sizes 0.060–0.650 µm.
CAMERA_PITCH_UM = (6.0, 6.5)
#: Light entering the specimen's medium cannot carry spatial frequencies above n/λ, so an oil
#: objective of NA 1.4 images cells in water with an effective transmitted-light NA of at
#: most ~n_medium (its fluorescence PSF keeps the nominal NA).
MAX_TRANSMITTED_NA = 1.3

#: Documented range of every randomised realism parameter (inclusive), per study unless said.
RANGES: dict[str, tuple[float, float]] = {
    "pixel_size_um": (0.060, 0.650),
    # cells' summed area per field area (log-uniform): 0.05 is sparse; cells overlap as they
    # are placed, so 2.5 covers ~90 % of the field (confluent, touching nuclei)
    "coverage": (0.05, 2.5),
    "clustering": (0.0, 0.8),  # probability that a cell is placed against an existing one
    "vignetting": (0.05, 0.35),  # relative intensity loss at the far corner (off-axis falloff)
    "gradient": (0.0, 0.15),  # peak-to-peak linear illumination gradient across the field
    "haze": (0.0, 0.2),  # fraction of transmitted light scattered into a broad veil
    "haze_sigma_um": (5.0, 30.0),  # width of that veil's blur
    "texture_opd_um": (0.0005, 0.003),  # OPD std of the substrate / medium (≤ 5 % of a cell)
    "texture_sigma_um": (0.5, 3.0),  # correlation length of that texture
    "debris_per_mm2": (50.0, 3000.0),  # refractile particles in the specimen plane
    "dust": (0.0, 6.0),  # dust shadows on the camera window (count, per camera)
    "dust_contrast": (0.02, 0.12),  # depth of a dust shadow
    "seam": (0.0, 0.08),  # brightness step between two stitched tiles (0 in 70 % of studies)
    "background_e": (500.0, 20000.0),  # electrons per pixel of an empty field
    "offset_adu": (0.0, 1000.0),  # camera offset (uint16 raw exports)
    "read_noise_e": (1.0, 10.0),  # sCMOS ~1–2 e⁻, CCD and older cameras up to 10 e⁻
    "prnu": (0.002, 0.015),  # pixel-to-pixel gain non-uniformity (fixed pattern), std
    "column_fpn_adu": (0.0, 3.0),  # per-column offset (sCMOS column amplifiers), std
    "stretch_low_pct": (0.0, 1.0),  # auto-contrast: grey level 0 at this percentile
    "stretch_high_pct": (99.0, 99.99),  # … and full scale at this one
    "fluorescence_haze": (0.0, 0.3),  # widefield out-of-focus light in the ground truth
}
#: Fraction of studies imaged as a single tile (no stitching seam).
SEAMLESS = 0.7
#: How often each export occurs.
EXPORTS: dict[Export, float] = {
    Export.RAW16: 0.45, Export.RAW8: 0.15, Export.STRETCH8: 0.3, Export.STRETCH16: 0.1,
}
#: How often a realistic study shows each cell type.
CELL_TYPES: dict[CellType, float] = {
    CellType.GENERIC: 0.3, CellType.EPITHELIAL: 0.3, CellType.ROUND: 0.2, CellType.NEURON: 0.2,
}


@dataclass(frozen=True)
class Realism:
    """A realistic study's instrument and specimen preparation (see :data:`RANGES`).

    Attributes
    ----------
    objective:
        The objective (sets pixel size with ``camera_pitch_um`` and the NA).
    camera_pitch_um:
        The camera's pixel pitch.
    cell_type:
        Morphology of the study's cells.
    vignetting, gradient:
        Illumination falloff at the far corner and peak-to-peak linear gradient.
    haze, haze_sigma_um:
        Scattered-light veil: fraction and blur width.
    texture_opd_um, texture_sigma_um:
        Substrate / medium texture in optical path, and its correlation length.
    debris_per_mm2:
        Refractile debris in the specimen plane.
    dust, dust_contrast:
        Dust shadows on the camera window (fixed for the camera) and their depth.
    seam:
        Relative brightness step at a stitching seam (0: a single tile).
    prnu, column_fpn_adu:
        Fixed-pattern noise of the camera (gain and column offset).
    export:
        How the image was saved; ``stretch_low_pct``/``stretch_high_pct`` for stretched ones.
    pattern_seed:
        Seed of everything fixed to the instrument (fixed pattern, dust positions), so all
        fields of view of a study share them, as with one camera.
    """

    objective: Objective
    camera_pitch_um: float
    cell_type: CellType
    vignetting: float
    gradient: float
    haze: float
    haze_sigma_um: float
    texture_opd_um: float
    texture_sigma_um: float
    debris_per_mm2: float
    dust: int
    dust_contrast: float
    seam: float
    prnu: float
    column_fpn_adu: float
    export: Export
    stretch_low_pct: float
    stretch_high_pct: float
    pattern_seed: int

    @property
    def pixel_size_um(self) -> float:
        """Pixel size in the specimen plane (µm)."""
        return self.camera_pitch_um / self.objective.magnification


def _u(rng: np.random.Generator, name: str) -> float:
    return float(rng.uniform(*RANGES[name]))


def _log_u(rng: np.random.Generator, name: str) -> float:
    lo, hi = RANGES[name]
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _pick(rng: np.random.Generator, table: dict):
    keys = list(table)
    return keys[rng.choice(len(keys), p=np.array(list(table.values())) / sum(table.values()))]


def draw_realism(rng: np.random.Generator) -> Realism:
    """Draw one realistic study's instrument and preparation."""
    return Realism(
        objective=_pick(rng, OBJECTIVES),
        camera_pitch_um=float(rng.uniform(*CAMERA_PITCH_UM)),
        cell_type=_pick(rng, CELL_TYPES),
        vignetting=_u(rng, "vignetting"), gradient=_u(rng, "gradient"),
        haze=_u(rng, "haze"), haze_sigma_um=_u(rng, "haze_sigma_um"),
        texture_opd_um=_u(rng, "texture_opd_um"), texture_sigma_um=_u(rng, "texture_sigma_um"),
        debris_per_mm2=_log_u(rng, "debris_per_mm2"),
        dust=int(rng.integers(RANGES["dust"][0], RANGES["dust"][1] + 1)),
        dust_contrast=_u(rng, "dust_contrast"),
        seam=0.0 if rng.random() < SEAMLESS else _u(rng, "seam"),
        prnu=_u(rng, "prnu"), column_fpn_adu=_u(rng, "column_fpn_adu"),
        export=_pick(rng, EXPORTS),
        stretch_low_pct=_u(rng, "stretch_low_pct"),
        stretch_high_pct=_u(rng, "stretch_high_pct"),
        pattern_seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True)
class Morphology:
    """Ranges (uniform draws, per study) of one cell type's shape.

    ``stress_fibres`` is an integer range (high exclusive); ``packing`` fixes the closest
    centre distance (None: it follows the density); ``max_coverage`` caps the density.
    """

    radius_um: tuple[float, float]
    elongation: tuple[float, float]
    height_um: tuple[float, float]
    nucleus_fraction: tuple[float, float]
    stress_fibres: tuple[int, int]
    roughness: float
    max_coverage: float = RANGES["coverage"][1]
    packing: float | None = None
    neurites: tuple[float, float] = (0.0, 0.0)
    neurite_length_um: tuple[float, float] = (80.0, 80.0)


#: Each type's ranges follow the cells they stand for: generic (fibroblast-like, elongated:
#: the clean preset's ranges), epithelial (wide, flat, rounded-polygonal, growing in touching
#: islands), round (rounded-up cells — mitotic, loosely adherent or suspension lines: small,
#: tall, smooth, kept apart) and neurons (small somata with large nuclei and long branching
#: neurites full of microtubules).
MORPHOLOGIES: dict[CellType, Morphology] = {
    CellType.GENERIC: Morphology((7, 14), (1.2, 2.5), (3, 6), (0.35, 0.5), (3, 20), 0.35),
    CellType.EPITHELIAL: Morphology((9, 16), (1.0, 1.4), (2, 4), (0.3, 0.45), (3, 10), 0.2),
    CellType.ROUND: Morphology((5, 9), (1.0, 1.15), (6, 12), (0.5, 0.65), (0, 3), 0.05,
                               max_coverage=1.0, packing=0.9),
    CellType.NEURON: Morphology((5, 9), (1.0, 1.3), (4, 8), (0.55, 0.7), (0, 3), 0.15,
                                max_coverage=0.5, neurites=(2, 6),
                                neurite_length_um=(40, 150)),
}


def realistic_cells(rng: np.random.Generator, cell_type: CellType) -> CellParams:
    """Cell parameters of one study of ``cell_type``: its :data:`MORPHOLOGIES`, any density."""
    shape = MORPHOLOGIES[cell_type]
    coverage = _log_u(rng, "coverage")
    lo, hi = RANGES["coverage"]
    # denser cultures pack tighter: centres may come closer (cells overlap at the edges)
    packing = float(0.8 - 0.4 * (coverage - lo) / (hi - lo))
    return CellParams(
        coverage=min(coverage, shape.max_coverage),
        packing=packing if shape.packing is None else shape.packing,
        clustering=_u(rng, "clustering"), cell_type=cell_type,
        radius_um=float(rng.uniform(*shape.radius_um)),
        elongation=float(rng.uniform(*shape.elongation)),
        height_um=float(rng.uniform(*shape.height_um)),
        nucleus_fraction=float(rng.uniform(*shape.nucleus_fraction)),
        stress_fibres=int(rng.integers(*shape.stress_fibres)), roughness=shape.roughness,
        mito_per_um2=float(rng.uniform(0.04, 0.12)), microtubules=int(rng.integers(30, 100)),
        neurites=float(rng.uniform(*shape.neurites)),
        neurite_length_um=float(rng.uniform(*shape.neurite_length_um)),
    )
