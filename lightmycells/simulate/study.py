"""Studies like the real ones: one modality, one microscope, one camera, partial labels.

Everything that varies between the challenge's 30 studies is drawn here, once per study;
:func:`render_fov` then renders one field of view of that study: a scene, its z-stack of
transmitted-light planes and the fluorescence ground truth of the organelles this field of
view happens to be labelled with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lightmycells.simulate import artefacts
from lightmycells.simulate.camera import Camera, illumination
from lightmycells.simulate.fluorescence import Fluorescence, render_fluorescence
from lightmycells.simulate.optics import Optics, transmitted_planes
from lightmycells.simulate.presets import (
    MAX_TRANSMITTED_NA,
    RANGES,
    Export,
    Preset,
    Realism,
    draw_realism,
    realistic_cells,
)
from lightmycells.simulate.scene import CellParams, Scene, make_scene
from lightmycells.vocab import MODALITIES, ORGANELLES, Modality, Organelle

#: Image shapes (Y, X) found in the real data.
REAL_SIZES: tuple[tuple[int, int], ...] = (
    (512, 512), (1024, 1024), (2048, 2048), (966, 1296), (980, 1016), (1200, 1200),
    (1300, 1624), (2044, 2048),
)
PIXEL_SIZE_UM = (0.06, 0.162)
#: Probability that a field of view carries each label. From the challenge's counts (fields
#: of view with nucleus 2533, mitochondria 1816, tubulin 223, actin 27), tubulin and actin
#: raised a little so small simulated sets still contain some.
LABEL_PROBABILITY = {
    Organelle.NUCLEUS: 0.92,
    Organelle.MITOCHONDRIA: 0.66,
    Organelle.TUBULIN: 0.10,
    Organelle.ACTIN: 0.04,
}
#: Organelles never imaged with a modality (the real data has no DIC→actin pair).
NEVER = {Modality.DIC: frozenset({Organelle.ACTIN})}
PLANE_CHOICES = (1, 3, 5, 7, 9, 11)
UINT8_FRACTION = 0.15


@dataclass(frozen=True)
class Study:
    """Everything fixed within one simulated study.

    Attributes
    ----------
    index:
        Study number (``Study_<index>``).
    modality:
        The study's transmitted-light modality.
    size:
        ``(Y, X)`` of every image in the study.
    planes:
        Number of z-planes per field of view.
    z_step_um:
        Distance between planes.
    optics:
        Transmitted-light microscope.
    camera:
        Camera of the transmitted-light images (uint16 or uint8).
    background_e:
        Expected electrons per pixel of an empty field.
    uneven:
        Strength of the uneven illumination.
    cells:
        How cells look.
    fluorescence:
        The fluorescence channel (ground truth).
    realism:
        The realistic preset's instrument and preparation; None for the clean preset.
    """

    index: int
    modality: Modality
    size: tuple[int, int]
    planes: int
    z_step_um: float
    optics: Optics
    camera: Camera
    background_e: float
    uneven: float
    cells: CellParams
    fluorescence: Fluorescence
    realism: Realism | None = None

    @property
    def pixel_size_um(self) -> float:
        """Pixel size of the study (µm)."""
        return self.optics.pixel_size_um


@dataclass
class Fov:
    """One rendered field of view.

    Attributes
    ----------
    scene:
        The specimen.
    z_um:
        Defocus of each plane (µm).
    best_z:
        Index of the in-focus plane.
    planes:
        ``(Z, Y, X)`` transmitted-light images in the study camera's dtype.
    targets:
        Fluorescence ground truth (uint16) of the organelles this field of view is labelled
        with.
    """

    scene: Scene
    z_um: list[float]
    best_z: int
    planes: np.ndarray
    targets: dict[Organelle, np.ndarray]


def sample_study(rng: np.random.Generator, index: int, modality: Modality, *,
                 size: tuple[int, int] | None = None, planes: int | None = None,
                 size_scale: float = 1.0, preset: Preset | str = Preset.CLEAN) -> Study:
    """Draw one study's microscope, camera, cells and image size.

    Parameters
    ----------
    rng:
        Source of randomness.
    index:
        Study number.
    modality:
        The study's modality.
    size:
        Force this ``(Y, X)``; by default one of :data:`REAL_SIZES` times ``size_scale``.
    planes:
        Force this number of z-planes; by default one of :data:`PLANE_CHOICES`.
    size_scale:
        Scale applied to the drawn real size (keeps the aspect ratio; ignored with ``size``).
    preset:
        ``clean`` (the original microscope; its draws never change) or ``realistic`` (the
        clean draws, then :func:`realistic_study` replaces the instrument and the cells).
    """
    preset = Preset(preset)
    if size is None:
        real = REAL_SIZES[rng.integers(len(REAL_SIZES))]
        size = (max(16, round(real[0] * size_scale)), max(16, round(real[1] * size_scale)))
    else:
        rng.integers(len(REAL_SIZES))  # keep the draws aligned whether or not size is forced
    n_planes = int(planes) if planes is not None else int(rng.choice(PLANE_CHOICES))
    ps = float(rng.uniform(*PIXEL_SIZE_UM))
    # small pixels come with high-NA objectives (100×/1.3 … 40×/0.75)
    na = float(np.clip(1.3 - 0.55 * (ps - 0.06) / 0.102 + rng.normal(0, 0.05), 0.6, 1.35))
    optics = Optics(
        pixel_size_um=ps, na=na, wavelength_um=float(rng.uniform(0.5, 0.6)),
        condenser_na=float(rng.uniform(0.2, 0.5) * na),
        pc_ring=float(rng.uniform(0.1, 0.2)), pc_amplitude=float(rng.uniform(0.3, 0.5)),
        dic_shear_um=float(rng.uniform(0.1, 0.25)) * float(rng.choice([-1, 1])),
        dic_angle=float(rng.choice([0.25, 0.75]) * np.pi + rng.normal(0, 0.05)),
        dic_bias=float(rng.uniform(0.8, 1.4)),
    )
    uint8 = rng.random() < UINT8_FRACTION
    background_e = float(rng.uniform(3000, 20000))
    if uint8:
        camera = Camera(read_noise_e=6.0, gain_e_per_adu=background_e / rng.uniform(90, 160),
                        offset_adu=float(rng.uniform(0, 10)), dtype="uint8")
    else:
        # gain high enough that 3.5× the background (a phase-contrast halo) stays unsaturated
        camera = Camera(read_noise_e=float(rng.uniform(1.5, 6)),
                        gain_e_per_adu=max(float(rng.uniform(0.5, 2)), 3.5 * background_e / 60000),
                        offset_adu=float(rng.choice([0, 100, 500])))
    cells = CellParams(
        radius_um=float(rng.uniform(7, 14)), coverage=float(rng.uniform(0.25, 0.7)),
        elongation=float(rng.uniform(1.2, 2.5)), height_um=float(rng.uniform(3, 6)),
        nucleus_fraction=float(rng.uniform(0.35, 0.5)),
        mito_per_um2=float(rng.uniform(0.04, 0.12)),
        microtubules=int(rng.integers(30, 100)), stress_fibres=int(rng.integers(3, 20)),
    )
    fluorescence = Fluorescence(
        na=na,
        # log-uniform 60–3000 e⁻ per unit density: dim and bright stainings alike
        signal_e={o: float(np.exp(rng.uniform(np.log(60), np.log(3000)))) for o in ORGANELLES},
        background_e=float(rng.uniform(10, 80)),
        camera=Camera(read_noise_e=float(rng.uniform(1.5, 3)),
                      gain_e_per_adu=float(rng.uniform(0.5, 2)), offset_adu=100.0),
    )
    study = Study(index, modality, (int(size[0]), int(size[1])), n_planes,
                  float(rng.uniform(0.5, 2.0)), optics, camera, background_e,
                  float(rng.uniform(0.03, 0.15)), cells, fluorescence)
    return realistic_study(rng, study) if preset is Preset.REALISTIC else study


def realistic_study(rng: np.random.Generator, study: Study) -> Study:
    """``study`` with a realistic instrument, camera, export and cells (drawn after it).

    The objective sets pixel size and NA; the z-step follows the depth of field (λn/NA², so
    a 10×/0.3 stack steps several µm, a 100×/1.4 one half a micrometre); the camera may be
    dim (500 e⁻ background: visible shot noise), 8-bit, offset by up to 1000 grey levels.
    """
    realism = draw_realism(rng)
    na = realism.objective.na
    t_na = min(na, MAX_TRANSMITTED_NA)
    optics = replace(study.optics, pixel_size_um=realism.pixel_size_um, na=t_na,
                     condenser_na=float(rng.uniform(0.2, 0.6)) * t_na)
    dof_um = optics.wavelength_um * optics.medium_index / t_na**2
    z_step = float(np.clip(rng.uniform(0.5, 1.5) * dof_um, 0.3, 8.0))
    lo, hi = np.log(RANGES["background_e"])
    background_e = float(np.exp(rng.uniform(lo, hi)))
    read_noise = float(rng.uniform(*RANGES["read_noise_e"]))
    if realism.export is Export.RAW8:
        camera = Camera(read_noise_e=read_noise,
                        gain_e_per_adu=background_e / float(rng.uniform(90, 160)),
                        offset_adu=float(rng.uniform(0, 10)), dtype="uint8")
    else:
        offset = float(rng.uniform(*RANGES["offset_adu"]))
        # 3.5× the background (a phase-contrast halo) stays below saturation
        gain = max(float(rng.uniform(0.3, 3.0)), 3.5 * background_e / (60000 - offset))
        camera = Camera(read_noise_e=read_noise, gain_e_per_adu=gain, offset_adu=offset)
    fluorescence = replace(study.fluorescence, na=na,
                           haze=float(rng.uniform(*RANGES["fluorescence_haze"])),
                           haze_sigma_um=float(rng.uniform(2, 5)))
    return replace(study, optics=optics, z_step_um=z_step, camera=camera,
                   background_e=background_e, uneven=0.0,
                   cells=realistic_cells(rng, realism.cell_type), fluorescence=fluorescence,
                   realism=realism)


def choose_labels(rng: np.random.Generator, modality: Modality,
                  probability: dict[Organelle, float] | None = None) -> tuple[Organelle, ...]:
    """The organelles one field of view is labelled with: never empty, never all four.

    Parameters
    ----------
    rng:
        Source of randomness (four uniform draws).
    modality:
        The study's modality (DIC never carries actin).
    probability:
        Per-organelle probability (default :data:`LABEL_PROBABILITY`); 1 for every organelle
        labels all those the modality allows (for demos), still never all four.
    """
    probability = LABEL_PROBABILITY if probability is None else probability
    allowed = [o for o in ORGANELLES if o not in NEVER.get(modality, frozenset())]
    draws = rng.random(len(ORGANELLES))  # always four draws, so the stream stays aligned
    labels = [o for o, u in zip(ORGANELLES, draws, strict=True)
              if o in allowed and u < probability[o]]
    if not labels:
        labels = [Organelle.NUCLEUS]
    if len(labels) == len(ORGANELLES):  # the real data has no fully labelled field of view
        labels.remove(Organelle.ACTIN if draws[3] > draws[2] else Organelle.TUBULIN)
    return tuple(labels)


def z_positions(rng: np.random.Generator, study: Study) -> tuple[list[float], int]:
    """Defocus of each plane and the index of the in-focus one (near the middle)."""
    k = study.planes
    best = int(np.clip(k // 2 + rng.integers(-1, 2), 0, k - 1)) if k > 2 else k // 2
    return [(i - best) * study.z_step_um for i in range(k)], best


def render_fov(rng: np.random.Generator, study: Study,
               labels: Sequence[Organelle] | None = None, *,
               z_um: Sequence[float] | None = None) -> Fov:
    """Render one field of view of ``study``: scene, z-stack and ground truth.

    Parameters
    ----------
    rng:
        Source of randomness.
    study:
        The study the field of view belongs to.
    labels:
        Organelles to render ground truth for; by default drawn with :func:`choose_labels`.
    z_um:
        Defocus of each plane (µm); by default the study's z-series around a best plane
        drawn near the middle. The best plane is the one closest to focus.
    """
    if labels is None:
        labels = choose_labels(rng, study.modality)
    scene = make_scene(rng, study.size, study.pixel_size_um, study.cells)
    if z_um is None:
        z_um, best = z_positions(rng, study)
    else:
        z_um = [float(z) for z in z_um]
        best = int(np.argmin(np.abs(z_um)))
    if study.realism is not None:
        planes = _realistic_planes(rng, study, scene, z_um)
    else:
        noise_free = transmitted_planes(scene, study.optics, study.modality, z_um)
        light = study.background_e * illumination(rng, study.size, study.uneven)
        planes = np.stack([study.camera.expose(light * plane, rng) for plane in noise_free])
    targets = {o: render_fluorescence(scene, o, study.fluorescence, rng) for o in labels}
    return Fov(scene, z_um, best, planes, targets)


def _realistic_planes(rng: np.random.Generator, study: Study, scene: Scene,
                      z_um: Sequence[float]) -> np.ndarray:
    """The realistic preset's z-stack: specimen extras, optics, haze, instrument, export."""
    real = study.realism
    ps = study.pixel_size_um
    artefacts.add_debris(rng, scene, real.debris_per_mm2)
    artefacts.add_texture(rng, scene, real.texture_opd_um, real.texture_sigma_um)
    noise_free = transmitted_planes(scene, study.optics, study.modality, z_um)
    noise_free = artefacts.haze(noise_free, real.haze, real.haze_sigma_um / ps)
    light, columns = artefacts.instrument(real, study.size)
    light = np.float32(study.background_e) * light
    return np.stack([artefacts.export(study.camera.expose(light * plane, rng, columns), real)
                     for plane in noise_free])


def modality_cycle(modalities: Sequence[Modality | str] | None) -> tuple[Modality, ...]:
    """Validated modalities (all three by default); studies take them in turn."""
    if modalities is None:
        return MODALITIES
    words = [str(m).strip().upper() for m in modalities]
    unknown = [w for w in words if w not in Modality.__members__]
    if unknown:
        raise ValueError(f"unknown modality '{unknown[0]}' (expected BF, PC or DIC)")
    out = tuple(Modality(w) for w in words)
    if not out:
        raise ValueError("no modality given")
    return out
