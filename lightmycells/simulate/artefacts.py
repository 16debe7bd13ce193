"""Realistic-preset effects: what a real instrument adds between the specimen and the file.

Each function applies one effect with its physical reason (docstrings); the ranges the
realistic preset draws them from are :data:`lightmycells.simulate.presets.RANGES`.

Specimen plane (added to the scene, so defocus and the modality's optics act on them):
:func:`add_debris`, :func:`add_texture`. Light path: :func:`haze`, :func:`vignette`,
:func:`gradient`, :func:`dust_shadows`, :func:`seam` (the last four fixed for the instrument:
:func:`instrument`). Camera: :func:`fixed_pattern`. File: :func:`export`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft

from lightmycells.simulate.presets import Export, Realism
from lightmycells.simulate.scene import Scene, _Splatter

#: Debris radii (µm), log-uniform: protein aggregates and salt crystals up to cell fragments.
DEBRIS_RADIUS_UM = (0.2, 2.0)
#: Refractive-index excess of debris over the medium (dense, often dead-cell material).
DEBRIS_DN = (0.02, 0.1)
#: Dust shadow radius on the sensor (pixels: the dust sits near the camera, not the specimen).
DUST_RADIUS_PX = (5.0, 40.0)


def fourier_gaussian(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur through the FFT (periodic edges), fast for the wide blurs used here."""
    h, w = image.shape
    fy = fft.fftfreq(h).astype(np.float32)[:, None]
    fx = fft.rfftfreq(w).astype(np.float32)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fy**2 + fx**2)).astype(np.float32)
    return fft.irfft2(fft.rfft2(image, workers=1) * kernel, s=(h, w), workers=1).astype(np.float32)


def add_debris(rng: np.random.Generator, scene: Scene, per_mm2: float) -> int:
    """Add unstained refractile particles to the specimen; return how many.

    Culture dishes carry cell fragments, protein aggregates and precipitates. They bend and
    absorb light like cells do but carry none of the four stains, so a model must learn to
    ignore them. Each is a Gaussian blob of radius 0.2–2 µm, Δn 0.02–0.1 over its diameter,
    absorbing a third of its phase (natural-log amplitude per µm of OPD).
    """
    h, w = scene.shape
    ps = scene.pixel_size_um
    n = int(rng.poisson(per_mm2 * h * w * ps * ps * 1e-6))
    if n == 0:
        return 0
    radius = np.exp(rng.uniform(*np.log(DEBRIS_RADIUS_UM), n))
    x, y = rng.uniform(0, w * ps, n), rng.uniform(0, h * ps, n)
    peak = rng.uniform(*DEBRIS_DN, n) * 2 * radius  # OPD at the particle's centre (µm)
    opd = np.zeros(scene.shape, np.float32)
    edges = np.exp(np.linspace(*np.log(DEBRIS_RADIUS_UM), 4))
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):  # three size classes, one blur each
        pick = (radius >= lo) & (radius <= hi)
        if pick.any():
            sigma = float(np.sqrt(lo * hi)) / 2 / ps
            splat = _Splatter(scene.shape, ps)
            splat.add(x[pick], y[pick], peak[pick] * 2 * np.pi * sigma**2)
            opd += splat.blurred(max(sigma, 0.5))
    scene.opd_um += opd
    scene.absorbance += np.float32(1 / 3) * opd
    return n


def add_texture(rng: np.random.Generator, scene: Scene, opd_um: float, sigma_um: float) -> None:
    """Add the optical texture of the substrate and medium (an OPD of std ``opd_um``).

    Plastic dishes, coverslip coatings and protein films in the medium are not optically
    flat: nanometres of path difference, correlated over ~1 µm, that show as a faint mottle
    in the background of every transmitted-light image.
    """
    noise = fourier_gaussian(rng.standard_normal(scene.shape, dtype=np.float32),
                             sigma_um / scene.pixel_size_um)
    scene.opd_um += np.float32(opd_um) * noise / max(float(noise.std()), 1e-9)


def haze(planes: np.ndarray, fraction: float, sigma_px: float) -> np.ndarray:
    """Scatter ``fraction`` of the light into a broad veil (blur ``sigma_px``).

    Out-of-focus material (floating cells, the dish bottom, condenser and lens surfaces)
    scatters part of the light: the image becomes ``(1 − h)·I + h·G_σ * I``, a loss of local
    contrast with a slowly varying veil.
    """
    if fraction <= 0:
        return planes
    return np.stack([(1 - fraction) * p + fraction * fourier_gaussian(p, sigma_px)
                     for p in planes]).astype(np.float32)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates in [−1, 1] (``(Y,1)`` and ``(1,X)``)."""
    return (np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None],
            np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :])


def vignette(shape: tuple[int, int], strength: float,
             centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Radial falloff: 1 at ``centre`` (normalised y, x), ``1 − strength`` at the far corner.

    Off-axis light loses intensity to the cos⁴ law and to clipping by lens mounts and the
    camera adapter; to first order the loss grows with the squared distance from the axis.
    """
    y, x = _grid(shape)
    r2 = (y - centre[0]) ** 2 + (x - centre[1]) ** 2
    far = max((cy - centre[0]) ** 2 + (cx - centre[1]) ** 2 for cy in (-1, 1) for cx in (-1, 1))
    return (1 - strength * r2 / far).astype(np.float32)


def gradient(shape: tuple[int, int], strength: float, angle: float) -> np.ndarray:
    """A linear ramp of peak-to-peak ``strength`` along ``angle``, mean 1.

    A misaligned (decentred or tilted) condenser or lamp illuminates one side of the field
    more than the other.
    """
    y, x = _grid(shape)
    ramp = np.cos(angle) * x + np.sin(angle) * y
    span = float(ramp.max() - ramp.min()) or 1.0
    return (1 + strength * (ramp - float(ramp.mean())) / span).astype(np.float32)


def dust_shadows(rng: np.random.Generator, shape: tuple[int, int], count: int,
                 contrast: float) -> np.ndarray:
    """Shadows of dust on the camera window: soft dark discs with a faint bright rim.

    Dust near the sensor is far out of focus, so each particle casts a blurred disc of its
    Fresnel shadow (5–40 px wide whatever the objective) at the same place in every image.
    """
    field = np.ones(shape, np.float32)
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    for _ in range(count):
        r = float(rng.uniform(*DUST_RADIUS_PX))
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        c = contrast * float(rng.uniform(0.5, 1.0))
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        disc = 0.5 - 0.5 * np.tanh((d - r) / (0.3 * r))  # a logistic edge 0.15·r wide
        rim = np.exp(-0.5 * ((d - 1.1 * r) / (0.1 * r)) ** 2)
        field *= 1 - c * disc + 0.3 * c * rim
    return field


def seam(rng: np.random.Generator, shape: tuple[int, int], step: float) -> np.ndarray:
    """A stitching seam: one side of a random row or column ``step`` brighter than the other.

    Large fields are stitched from tiles; without flat-field correction each tile keeps its
    own exposure and lamp drift, so a straight brightness step runs across the mosaic.
    """
    field = np.ones(shape, np.float32)
    if step <= 0:
        return field
    axis = int(rng.integers(2))
    at = int(rng.integers(shape[axis] // 4, 3 * shape[axis] // 4 + 1))
    index = (slice(at, None), slice(None)) if axis == 0 else (slice(None), slice(at, None))
    field[index] = 1 + step
    return field


@lru_cache(maxsize=8)
def instrument(realism: Realism, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The instrument's fixed fields for one image shape: ``(illumination, column_adu)``.

    The illumination (vignetting × gradient × dust shadows) multiplies the light and already
    contains the pixel gain non-uniformity (PRNU); ``column_adu`` is added to the counts.
    Both derive from ``realism.pattern_seed`` alone: one instrument, the same in every field
    of view of the study.
    """
    rng = np.random.default_rng(realism.pattern_seed)
    centre = (float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1)))
    light = vignette(shape, realism.vignetting, centre)
    light *= gradient(shape, realism.gradient, float(rng.uniform(0, 2 * np.pi)))
    light *= dust_shadows(rng, shape, realism.dust, realism.dust_contrast)
    light *= seam(rng, shape, realism.seam)
    prnu, columns = fixed_pattern(rng, shape, realism.prnu, realism.column_fpn_adu)
    light *= prnu
    light.flags.writeable = columns.flags.writeable = False  # cached: shared between calls
    return light, columns


def fixed_pattern(rng: np.random.Generator, shape: tuple[int, int], prnu: float,
                  column_adu: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera fixed-pattern noise: ``(gain map around 1, per-column offset in ADU)``.

    Every pixel of a sensor converts light with a slightly different efficiency (PRNU,
    0.2–1.5 %), and sCMOS sensors read each column through its own amplifier and converter,
    whose offsets differ by a few grey levels (vertical stripes in dark images).
    """
    gain = 1 + np.float32(prnu) * rng.standard_normal(shape, dtype=np.float32)
    columns = np.float32(column_adu) * rng.standard_normal((1, shape[1]), dtype=np.float32)
    return gain, np.broadcast_to(columns, shape)


def export(frame: np.ndarray, realism: Realism) -> np.ndarray:
    """Save a camera frame the way the study's software did (see :class:`Export`).

    Acquisition software often applies its display auto-contrast on export: grey level 0 at
    a low percentile and full scale at a high one, tails clipped, and many studies keep only
    8 bits. Raw exports return the frame unchanged.
    """
    if realism.export in (Export.RAW16, Export.RAW8):
        return frame
    lo, hi = np.percentile(frame, [realism.stretch_low_pct, realism.stretch_high_pct])
    scaled = np.clip((frame.astype(np.float32) - lo) / max(float(hi - lo), 1.0), 0, 1)
    if realism.export is Export.STRETCH8:
        return np.rint(scaled * 255).astype(np.uint8)
    return np.rint(scaled * 65535).astype(np.uint16)
