"""Transmitted-light imaging of a scene: bright field, Zernike phase contrast, DIC.

The specimen is the thin complex field ``A·exp(iφ)`` with ``φ = 2π/λ · OPD`` and
``A = exp(-absorbance)``. Each modality is one linear filter on that field's spectrum,
followed by ``|U|²``:

* defocus ``z``: angular-spectrum propagation ``exp(i·2π·z·(√((n/λ)² − f²) − n/λ))``;
* the objective pupil (cut-off ``NA/λ``, softened to avoid ringing);
* BF: nothing more;
* PC: the frequencies passing the phase ring (the undiffracted light and, because the ring
  has a finite width, the lowest object frequencies too — hence the halo) are phase-shifted
  by −π/2 and attenuated;
* DIC: two copies sheared by ``s`` with bias retardation ``β`` interfere between crossed
  polarisers, ``U(x+s/2)·e^{iβ/2} − U(x−s/2)·e^{−iβ/2}``, i.e. the filter ``i·sin(β/2 + π f·s)``.

Partial coherence of the condenser (numerical aperture ``condenser_na``) is approximated by a
Gaussian envelope on the intensity spectrum that grows with defocus (each illumination angle
shifts the defocused image sideways). Images are normalised so an empty field is 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft

from lightmycells.simulate.scene import Scene
from lightmycells.vocab import Modality

#: Reflect-padding (µm) around the field so propagation does not wrap around.
PAD_UM = 4.0


@dataclass(frozen=True)
class Optics:
    """The transmitted-light microscope of one study.

    Attributes
    ----------
    pixel_size_um:
        Pixel size in the specimen plane.
    na:
        Objective numerical aperture.
    wavelength_um:
        Illumination wavelength.
    condenser_na:
        Condenser numerical aperture (partial coherence).
    medium_index:
        Refractive index of the medium.
    pc_ring:
        Phase-ring radius as a fraction of ``NA/λ`` (sets the halo width).
    pc_amplitude:
        Amplitude transmission of the phase ring (0.3–0.5 typical).
    dic_shear_um:
        DIC shear length; its sign flips the relief.
    dic_angle:
        Shear direction (radians from the x axis).
    dic_bias:
        DIC bias retardation β (radians).
    """

    pixel_size_um: float
    na: float = 0.9
    wavelength_um: float = 0.55
    condenser_na: float = 0.3
    medium_index: float = 1.335
    pc_ring: float = 0.08
    pc_amplitude: float = 0.4
    dic_shear_um: float = 0.15
    dic_angle: float = np.pi / 4
    dic_bias: float = 0.6


def _frequencies(shape: tuple[int, int], ps: float) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies (cycles/µm), broadcastable ``(Y,1)`` and ``(1,X)``."""
    fy = fft.fftfreq(shape[0], d=ps).astype(np.float32)[:, None]
    fx = fft.fftfreq(shape[1], d=ps).astype(np.float32)[None, :]
    return fy, fx


def modality_filter(optics: Optics, modality: Modality, fy: np.ndarray,
                    fx: np.ndarray) -> np.ndarray:
    """The modality's filter on the field spectrum (pupil included), complex64."""
    f = np.sqrt(fy**2 + fx**2)
    cutoff = optics.na / optics.wavelength_um
    # soft pupil edge (over 5 % of the cut-off): a hard edge rings in coherent imaging
    pupil = np.clip((cutoff - f) / (0.05 * cutoff) + 0.5, 0, 1).astype(np.complex64)
    if modality is Modality.BF:
        return pupil
    if modality is Modality.PC:
        ring = 1 / (1 + (f / (optics.pc_ring * cutoff)) ** 8)
        shift = optics.pc_amplitude * np.exp(-0.5j * np.pi)
        return (pupil * (1 + (shift - 1) * ring)).astype(np.complex64)
    if modality is Modality.DIC:
        s = optics.dic_shear_um
        fs = fx * s * np.cos(optics.dic_angle) + fy * s * np.sin(optics.dic_angle)
        return (pupil * 1j * np.sin(optics.dic_bias / 2 + np.pi * fs)).astype(np.complex64)
    raise NotImplementedError(f"modality '{modality}' is not supported.")


def _defocus(optics: Optics, f2: np.ndarray, z_um: float) -> np.ndarray:
    k = optics.medium_index / optics.wavelength_um
    phase = np.float32(2 * np.pi * z_um) * (np.sqrt(np.clip(k**2 - f2, 0, None)) - k)
    out = np.empty(phase.shape, np.complex64)  # cos + i·sin in float32: 5× a complex exp
    out.real = np.cos(phase)
    out.imag = np.sin(phase)
    return out


def transmitted_planes(scene: Scene, optics: Optics, modality: Modality,
                       z_um: Sequence[float]) -> np.ndarray:
    """Noise-free intensities of ``scene`` at each defocus ``z_um`` (µm; 0 is focus).

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` float32, 1 where the field is empty.
    """
    ps = scene.pixel_size_um
    pad = int(np.ceil((PAD_UM + max((abs(z) for z in z_um), default=0) * optics.na) / ps))
    h, w = scene.shape
    pad_y, pad_x = min(pad, h - 1), min(pad, w - 1)
    big = (fft.next_fast_len(h + 2 * pad_y), fft.next_fast_len(w + 2 * pad_x))
    extra = (big[0] - h - 2 * pad_y, big[1] - w - 2 * pad_x)
    widths = ((pad_y, pad_y + extra[0]), (pad_x, pad_x + extra[1]))
    k = np.float32(2 * np.pi / optics.wavelength_um)
    phase = np.pad(scene.opd_um, widths, mode="reflect") * k
    amplitude = np.exp(-np.pad(scene.absorbance, widths, mode="reflect"))
    spectrum = fft.fft2((amplitude * np.exp(1j * phase)).astype(np.complex64), workers=1)
    fy, fx = _frequencies(big, ps)
    f2 = fy**2 + fx**2
    mfilter = modality_filter(optics, modality, fy, fx)
    background = float(np.abs(mfilter[0, 0]) ** 2)
    rfy, rfx = fy, fx[:, : big[1] // 2 + 1]
    rf2 = rfy**2 + rfx**2
    out = np.empty((len(z_um), h, w), np.float32)
    for i, z in enumerate(z_um):
        field = fft.ifft2(spectrum * mfilter * _defocus(optics, f2, z), workers=1)
        intensity = field.real**2 + field.imag**2
        if z != 0:
            # partial coherence: illumination angles up to condenser_na shift the defocused
            # image by up to z·NA_c/n; a Gaussian of half that radius averages them
            sigma = 0.5 * abs(z) * optics.condenser_na / optics.medium_index
            envelope = np.exp(-2 * (np.pi * sigma) ** 2 * rf2).astype(np.float32)
            intensity = fft.irfft2(fft.rfft2(intensity, workers=1) * envelope, s=big, workers=1)
        out[i] = intensity[pad_y : pad_y + h, pad_x : pad_x + w] / background
    return out
