"""Fluorescence ground truth: stain density → widefield image at best focus → camera."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lightmycells.simulate.artefacts import fourier_gaussian
from lightmycells.simulate.camera import Camera
from lightmycells.simulate.scene import Scene
from lightmycells.vocab import Organelle

#: Emission wavelengths (µm) of typical stains: Hoechst/DAPI, MitoTracker Red,
#: GFP/Alexa 488-tubulin, phalloidin-Alexa 568.
EMISSION_UM = {
    Organelle.NUCLEUS: 0.46,
    Organelle.MITOCHONDRIA: 0.60,
    Organelle.TUBULIN: 0.52,
    Organelle.ACTIN: 0.57,
}
#: Diffuse signal per µm of cell thickness, relative to the structures (unbound dye, free
#: tubulin dimers, G-actin): what makes real organelle images less than binary.
CYTOPLASMIC = {
    Organelle.NUCLEUS: 0.0,
    Organelle.MITOCHONDRIA: 0.02,
    Organelle.TUBULIN: 0.05,
    Organelle.ACTIN: 0.04,
}


@dataclass(frozen=True)
class Fluorescence:
    """The fluorescence channel of one study.

    Attributes
    ----------
    na:
        Objective numerical aperture.
    signal_e:
        Expected electrons at density 1, per organelle.
    background_e:
        Expected electrons of background (autofluorescence, stray light).
    camera:
        The camera that records it.
    haze:
        Out-of-focus light (realistic preset): a widefield microscope also collects the
        blurred light of the structures above and below focus, added as this fraction of the
        stain blurred over ``haze_sigma_um``. 0 (the clean preset) adds nothing.
    haze_sigma_um:
        Width of that blur.
    """

    na: float
    signal_e: dict[Organelle, float]
    background_e: float = 30.0
    camera: Camera = Camera()
    haze: float = 0.0
    haze_sigma_um: float = 3.0


def psf_sigma_px(organelle: Organelle, na: float, pixel_size_um: float) -> float:
    """Standard deviation (pixels) of the Gaussian approximation of the widefield PSF.

    0.21·λ/NA is the standard Gaussian fit to the Airy disc's central lobe.
    """
    return 0.21 * EMISSION_UM[organelle] / na / pixel_size_um


def expected_fluorescence(scene: Scene, organelle: Organelle, params: Fluorescence) -> np.ndarray:
    """Noise-free expected electrons per pixel (float32) for one organelle."""
    stain = scene.density[organelle] + CYTOPLASMIC[organelle] * scene.thickness_um
    sigma = psf_sigma_px(organelle, params.na, scene.pixel_size_um)
    blurred = ndimage.gaussian_filter(stain, sigma)
    if params.haze > 0:
        blurred += params.haze * fourier_gaussian(stain, params.haze_sigma_um / scene.pixel_size_um)
    return (params.background_e + params.signal_e[organelle] * blurred).astype(np.float32)


def render_fluorescence(scene: Scene, organelle: Organelle, params: Fluorescence,
                        rng: np.random.Generator) -> np.ndarray:
    """One noisy uint16 fluorescence image of ``organelle`` at best focus."""
    return params.camera.expose(expected_fluorescence(scene, organelle, params), rng)


def noisy_pair(scene: Scene, organelle: Organelle, params: Fluorescence,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent noisy images of the same ground truth (for noise ceilings).

    Scoring one against the other gives the best any model could reach: it cannot predict
    the noise of the ground truth it is compared with.
    """
    expected = expected_fluorescence(scene, organelle, params)
    first, second = (np.random.default_rng([seed, i]) for i in range(2))
    return params.camera.expose(expected, first), params.camera.expose(expected, second)
