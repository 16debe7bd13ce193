"""The camera: uneven illumination, Poisson–Gaussian noise, offset and quantisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Expected electrons above which shot noise is drawn from its normal approximation.
NORMAL_ABOVE_E = 1000.0


@dataclass(frozen=True)
class Camera:
    """A scientific camera (sCMOS/CCD) as far as the pixels are concerned.

    Attributes
    ----------
    read_noise_e:
        Read noise (electrons, standard deviation).
    gain_e_per_adu:
        Electrons per grey level.
    offset_adu:
        Grey level of zero light.
    dtype:
        ``"uint16"`` or ``"uint8"``.
    """

    read_noise_e: float = 2.0
    gain_e_per_adu: float = 1.0
    offset_adu: float = 100.0
    dtype: str = "uint16"

    def expose(self, electrons: np.ndarray, rng: np.random.Generator,
               pattern_adu: np.ndarray | None = None) -> np.ndarray:
        """Expected electrons per pixel → one noisy frame in the camera's dtype.

        ``pattern_adu`` (optional) is a fixed offset pattern added to the counts before
        rounding (the column offsets of an sCMOS sensor).

        Shot noise is Poisson (its normal approximation when every pixel expects more than
        ``NORMAL_ABOVE_E`` electrons, where the two are indistinguishable and the normal is
        3× faster); read noise is Gaussian; values clip to the dtype's range, as a saturated
        camera would.
        """
        expected = np.clip(electrons, 0, None).astype(np.float32)
        if expected.size and expected.min() > NORMAL_ABOVE_E:
            counts = expected + np.sqrt(expected) * rng.standard_normal(expected.shape,
                                                                        dtype=np.float32)
        else:
            counts = rng.poisson(expected).astype(np.float32)
        counts += np.float32(self.read_noise_e) * rng.standard_normal(expected.shape,
                                                                      dtype=np.float32)
        adu = counts / self.gain_e_per_adu + self.offset_adu
        if pattern_adu is not None:
            adu += pattern_adu
        adu = np.rint(adu)
        return np.clip(adu, 0, np.iinfo(self.dtype).max).astype(self.dtype)


def illumination(rng: np.random.Generator, shape: tuple[int, int],
                 strength: float) -> np.ndarray:
    """A smooth, uneven illumination field around 1: a tilt plus an off-centre vignette."""
    y = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    ty, tx, cy, cx = rng.uniform(-1, 1, 4)
    vignette = (y - 0.4 * cy) ** 2 + (x - 0.4 * cx) ** 2
    field = 1 + strength * (0.5 * (ty * y + tx * x) - 0.5 * vignette)
    return (field / field.mean()).astype(np.float32)
