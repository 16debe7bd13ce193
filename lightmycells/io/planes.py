"""Read one 2D plane from any of the formats users keep paired images in.

OME-TIFF and plain TIFF go through :func:`lightmycells.io.ome.read` (pixel size and modality
from the metadata); PNG — what many labs export from Fiji or a microscope's software — is
read with Pillow, imported only when a PNG arrives (the container never needs it). The pixel
size of a PNG is unknown unless the caller states it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightmycells.io import ome
from lightmycells.vocab import Modality

PNG_SUFFIXES = (".png",)
PLANE_SUFFIXES = (*ome.TIFF_SUFFIXES, *PNG_SUFFIXES)
#: Pillow modes of single-channel images (8-bit, 16-bit, 32-bit int and float, 1-bit).
GREY_MODES = ("L", "I", "I;16", "I;16B", "F", "1")


@dataclass(frozen=True)
class PlaneFile:
    """One decoded 2D plane: pixels (Y, X) float32, and what its file says."""

    pixels: np.ndarray
    pixel_size_um: tuple[float, float] | None
    modality: Modality | None


def read_plane(path: str | Path) -> PlaneFile:
    """Read a 2D image from a TIFF, OME-TIFF or PNG file as float32.

    Raises
    ------
    lightmycells.io.ome.ImageError
        One line naming the file: unreadable, unknown suffix, not 2D, or colour.
    """
    path = Path(path)
    try:
        return _read(path)
    except ome.ImageError as exc:
        raise ome.ImageError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ome.ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read(path: Path) -> PlaneFile:
    suffix = path.suffix.lower()
    if suffix in ome.TIFF_SUFFIXES:
        array, meta = ome.read(path)
        pixel_size, modality = meta.pixel_size_um, meta.modality
    elif suffix in PNG_SUFFIXES:
        array, pixel_size, modality = _read_png(path), None, None
    else:
        raise ome.ImageError(f"unsupported file type {path.suffix!r} "
                             f"(expected one of {', '.join(PLANE_SUFFIXES)})")
    if array.ndim != 2:
        raise ome.ImageError(f"expected one 2D plane (got shape {array.shape})")
    return PlaneFile(np.asarray(array, dtype=np.float32), pixel_size, modality)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # only the training side reads PNGs

    try:
        with Image.open(path) as image:
            if image.mode not in GREY_MODES:
                raise ome.ImageError(f"colour PNG (mode {image.mode}); expected one grey channel")
            return np.array(image)
    except UnidentifiedImageError:
        raise ome.ImageError("not a readable PNG") from None
