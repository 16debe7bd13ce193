"""Training data: index Light My Cells-layout folders, split them, sample augmented patches.

Layout (real S-BIAD1047 or simulated): ``ROOT/Study_N/image_<ID>_<BF|PC|DIC>_z<k>.ome.tiff``
inputs, ``ROOT/Study_N/image_<ID>_<Organelle>.ome.tiff`` targets. Each index entry is one
field of view: its focus planes, the targets that exist, study and modality.

Sampling is a pure function of the sample index (``rng = default_rng((seed, index))``), so a
resumed or distributed run draws exactly the patches an uninterrupted single process would.
Each sample picks an organelle uniformly among the model's outputs, then a study uniformly
among the studies that have it, then a field of view, then a random focus plane (all planes
are free augmentation) and a random patch. Missing targets come back as zeros with
``mask = 0``: the losses ignore them.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from lightmycells.data.index import INDEX_FILE, read_index
from lightmycells.data.store import LazyRows
from lightmycells.engine import normalize, resample, zstack
from lightmycells.io import ome
from lightmycells.io.layout import BEST_Z_FILE, INPUT_NAME, TARGET_NAME
from lightmycells.io.planes import read_plane
from lightmycells.train.config import AugmentConfig, DataConfig, ZStack
from lightmycells.train.modality import code as modality_code
from lightmycells.vocab import Modality, Organelle

#: Smoothing of the elastic displacement field, in pixels.
ELASTIC_SIGMA = 8.0


class DataError(ValueError):
    """Training data that cannot be used; the message names the folder or file."""


@dataclass(frozen=True)
class FieldOfView:
    """One field of view of one study in one modality.

    Attributes
    ----------
    study:
        Study folder name, e.g. ``"Study_3"`` (prefixed with the root when several roots
        hold the same study name).
    image_id:
        The ``<ID>`` of ``image_<ID>_...``.
    modality:
        BF, PC or DIC.
    planes:
        Input files sorted by z.
    z:
        The z index of each plane.
    targets:
        Organelle → target file, for the targets that exist.
    best_z:
        Best-focus plane from ``best_z.csv``, or None.
    pixel_size_um:
        ``(y, x)`` pixel size in µm of the first plane's header, or None when unknown.
    """

    study: str
    image_id: str
    modality: Modality
    planes: tuple[Path, ...]
    z: tuple[int, ...]
    targets: dict[Organelle, Path] = field(hash=False)
    best_z: int | None = None
    pixel_size_um: tuple[float, float] | None = None

    @property
    def key(self) -> str:
        """Unique name, ``<study>/image_<ID>_<modality>``."""
        return f"{self.study}/image_{self.image_id}_{self.modality}"

    def validation_plane(self) -> Path:
        """The best-focus plane when known, else the middle plane."""
        if self.best_z is not None and self.best_z in self.z:
            return self.planes[self.z.index(self.best_z)]
        return self.planes[len(self.planes) // 2]


def _read_best_z(path: Path) -> dict[tuple[str, str], int]:
    """``(image id, modality) -> best z`` from a ``best_z.csv`` (empty if absent).

    ``name`` may be ``image_<ID>``, ``image_<ID>_<M>`` or ``image_<ID>_<M>_z<k>``.
    """
    if not path.exists():
        return {}
    out: dict[tuple[str, str], int] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                name, modality, best = row["name"], row["modality"], int(row["best_z"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: expected columns name,modality,image_z,best_z") from None
            image_id = re.sub(r"^image_", "", name)
            image_id = re.sub(r"_(BF|PC|DIC)(_z\d+)?(\.ome\.tiff?)?$", "", image_id)
            out[(image_id, modality)] = best
    return out


def _study_dirs(roots: Sequence[Path]) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for root in roots:
        if not root.is_dir():
            raise DataError(f"{root}: not a folder")
        studies = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("Study_"))
        if not studies:
            raise DataError(f"{root}: no Study_* folders (expected the Light My Cells layout)")
        prefix = f"{root.name}:" if len(roots) > 1 else ""
        found += [(prefix + s.name, s) for s in studies]
    return found


def index_fovs(
    roots: Sequence[str | Path], modalities: Iterable[Modality] | None = None
) -> list[FieldOfView]:
    """Index every field of view under ``roots`` (optionally only some modalities).

    A single root holding ``lmc_index.json`` (``python -m lightmycells.data index``) gives
    the fields of view that index kept: the quirky files (unreadable, metadata-only,
    constant) are left out.

    Raises
    ------
    DataError
        When a root is missing, holds no ``Study_*`` folder, or no input plane at all.
    """
    if len(roots) == 1 and (Path(roots[0]) / INDEX_FILE).exists():
        # indexed by `python -m lightmycells.data index`: its usable files, quirks left out
        path = Path(roots[0]) / INDEX_FILE
        try:
            entries = read_index(path)["fovs"]
        except ValueError as exc:
            raise DataError(str(exc)) from None
        if fovs := _indexed_fovs(entries, Path(roots[0]), modalities):
            return fovs
        raise DataError(f"{path}: no usable field of view")
    wanted = set(modalities) if modalities is not None else set(Modality)
    fovs: list[FieldOfView] = []
    root_best = {Path(r): _read_best_z(Path(r) / BEST_Z_FILE) for r in roots}
    for study, study_dir in _study_dirs([Path(r) for r in roots]):
        planes: dict[tuple[str, str], list[tuple[int, Path]]] = defaultdict(list)
        targets: dict[str, dict[Organelle, Path]] = defaultdict(dict)
        for path in sorted(study_dir.iterdir()):
            if m := INPUT_NAME.match(path.name):
                planes[(m["id"], m["modality"])].append((int(m["z"]), path))
            elif m := TARGET_NAME.match(path.name):
                targets[m["id"]][Organelle(m["organelle"].lower())] = path
        best = {**root_best[study_dir.parent], **_read_best_z(study_dir / BEST_Z_FILE)}
        for (image_id, modality), zs in sorted(planes.items()):
            if Modality(modality) not in wanted:
                continue
            zs.sort()
            fovs.append(FieldOfView(
                study=study, image_id=image_id, modality=Modality(modality),
                planes=tuple(p for _, p in zs), z=tuple(z for z, _ in zs),
                targets=dict(targets.get(image_id, {})), best_z=best.get((image_id, modality)),
                pixel_size_um=pixel_size_yx(zs[0][1]),
            ))
    if not fovs:
        raise DataError(f"no input planes found under {', '.join(str(r) for r in roots)}")
    return fovs


def split_fovs(
    fovs: Sequence[FieldOfView], by: str, val_fraction: float, seed: int
) -> tuple[list[FieldOfView], list[FieldOfView]]:
    """Split into (train, validation) by field of view or by whole study, reproducibly.

    The split does not depend on which organelles a model uses, so every model of a run
    validates on the same held-out fields of view.
    """
    groups = sorted({f.study if by == "study" else f.key for f in fovs})
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val = math.ceil(val_fraction * len(groups)) if val_fraction > 0 and len(groups) > 1 else 0
    n_val = min(n_val, len(groups) - 1)
    held = {groups[i] for i in order[:n_val]}
    val = [f for f in fovs if (f.study if by == "study" else f.key) in held]
    train = [f for f in fovs if (f.study if by == "study" else f.key) not in held]
    return train, val


def with_targets(fovs: Iterable[FieldOfView], organelles: Sequence[Organelle]) -> list[FieldOfView]:
    """The fields of view that have at least one of ``organelles`` as a target."""
    return [f for f in fovs if any(o in f.targets for o in organelles)]


def sampling_weights(fovs: Sequence[FieldOfView], organelles: Sequence[Organelle]) -> np.ndarray:
    """Probability of each field of view: organelle, then study, then FOV uniformly.

    A field of view with several of the organelles collects the probability of each.
    """
    weights = np.zeros(len(fovs))
    for organelle in organelles:
        by_study: dict[str, list[int]] = defaultdict(list)
        for i, fov in enumerate(fovs):
            if organelle in fov.targets:
                by_study[fov.study].append(i)
        for members in by_study.values():
            weights[members] += 1.0 / (len(organelles) * len(by_study) * len(members))
    total = weights.sum()
    if total <= 0:
        names = ", ".join(organelles)
        raise DataError(f"no training field of view has a target for {names}")
    return weights / total


def pixel_size_yx(path: Path) -> tuple[float, float] | None:
    """Pixel size ``(y, x)`` in µm of one TIFF as the container reads it, else None.

    From the header only: OME-XML, then the resolution tags (:func:`ome.read_meta`).
    """
    meta = ome.read_meta(path)
    if not meta.pixel_size_um:
        return None
    return float(meta.pixel_size_um[0]), float(meta.pixel_size_um[1])


def in_pixel_range(fovs: Iterable[FieldOfView], lo: float, hi: float) -> list[FieldOfView]:
    """The fields of view whose pixel size (x, µm) lies in ``[lo, hi)``.

    Raises
    ------
    DataError
        When none does (naming the range and the pixel sizes found).
    """
    fovs = list(fovs)
    kept = [f for f in fovs if f.pixel_size_um is not None and lo <= f.pixel_size_um[1] < hi]
    if not kept:
        found = sorted({round(f.pixel_size_um[1], 4) for f in fovs if f.pixel_size_um})
        shown = ", ".join(map(str, found[:8])) + (" ..." if len(found) > 8 else "")
        raise DataError(f"no field of view has a pixel size in [{lo}, {hi}) µm "
                        f"(found: {shown or 'none with a pixel size'})")
    return kept


class _Fixed(normalize._Affine):
    """The engine's affine normalisation with statistics fixed in advance.

    The statistics are the whole image's, so a crop is normalised with exactly the arithmetic
    and the degenerate-image rule (spread ≤ ``normalize.EPS`` → scale 1) of
    :class:`normalize.Percentile`.
    """

    def __init__(self, offset: float, spread: float) -> None:
        self._stats = (offset, spread)

    def stats(self, x: np.ndarray) -> tuple[float, float]:
        """The fixed (offset, spread)."""
        return self._stats


@dataclass
class Plane:
    """One decoded image (resampled when asked) and the statistics its normalisation needs."""

    pixels: np.ndarray  # (Y, X) float32, raw intensities (at the training pixel size)
    offset: float  # the engine's percentile normalisation: norm_low percentile …
    spread: float  # … and distance to the norm_high percentile, of the image as read
    vmin: float
    vmax: float

    def normalized(self, pixels: np.ndarray | None = None) -> np.ndarray:
        """The engine's percentile normalisation of this plane (or of a crop of it), float32.

        Unclipped, as the challenge metrics normalise; equal to
        ``normalize.Percentile(low, high).before(image)`` for the whole image as read.
        """
        pixels = self.pixels if pixels is None else pixels
        return _Fixed(self.offset, self.spread).before(pixels)[0]


#: What a plane is read from: one file, or a focus stack's files (maximum projection).
Source = Path | tuple[Path, ...]


class ImageStore:
    """Reads planes (optionally keeping them), normalisation statistics computed once per file.

    With ``resample_um`` every image whose pixel size differs from it by more than the
    container's tolerance is resampled with the container's own resampler
    (:func:`lightmycells.engine.resample.to_pixel_size`: anti-aliased when shrinking, pixel
    centres on the same physical grid, so an input and its target stay aligned). The
    normalisation statistics and the range (``vmin``, ``vmax``: the gamma augmentation's
    domain) are those of the image as read, as the container normalises before it
    resamples.
    """

    def __init__(self, low: float, high: float, cache: bool,
                 resample_um: float | None = None) -> None:
        self.normalizer = normalize.Percentile(low, high)
        self.cache, self.resample_um = cache, resample_um
        self._planes: dict[tuple[Source, tuple[float, float] | None], Plane] = {}

    def get(self, source: Source, pixel_size: tuple[float, float] | None = None) -> Plane:
        """The decoded plane of ``source`` (a tuple: their maximum projection).

        ``pixel_size`` ``(y, x)`` µm is needed with ``resample_um`` (a :class:`DataError`
        names the file when it is missing).
        """
        key = (source, pixel_size)
        if key in self._planes:
            return self._planes[key]
        paths = source if isinstance(source, tuple) else (source,)
        raw = _read_plane(paths[0])
        if len(paths) > 1:
            raw = zstack.reduce(np.stack([raw, *(_read_plane(p) for p in paths[1:])]), "mip")
        offset, spread = self.normalizer.stats(raw)
        pixels = self._resampled(raw, pixel_size, paths[0])
        plane = Plane(pixels, float(offset), float(spread), float(raw.min()),
                      float(raw.max()))  # range as read, as the store's statistics
        if self.cache:
            self._planes[key] = plane
        return plane

    def patch_plane(self, source: Source,
                    pixel_size: tuple[float, float] | None = None) -> Plane:
        """The plane training patches are cut from (here the decoded plane itself)."""
        return self.get(source, pixel_size)

    #: Where a plane's pixel size comes from, for the error when it has none.
    PIXEL_SIZE_FROM = "the file"

    def _resamples(self, pixel_size: tuple[float, float] | None, path: Path) -> bool:
        """Whether a plane of ``pixel_size`` is resampled to ``resample_um``.

        Raises
        ------
        DataError
            With ``resample_um`` and no pixel size (the file named).
        """
        if self.resample_um is None:
            return False
        if pixel_size is None:
            raise DataError(f"{path}: no pixel size in {self.PIXEL_SIZE_FROM}, but "
                            f"data.resample_um is {self.resample_um} µm (resampling needs it)")
        return resample.needs_resampling(pixel_size, self.resample_um)

    def _resampled(self, raw: np.ndarray, pixel_size: tuple[float, float] | None,
                   path: Path) -> np.ndarray:
        if not self._resamples(pixel_size, path):
            return raw
        return resample.to_pixel_size(raw, pixel_size, self.resample_um)


class ResampledPlane(LazyRows):
    """A lazy plane seen at another pixel size: crops resample only the region they need.

    ``source`` is any 2D array-like that reads what is sliced (a store's ``LazyPlane``);
    its pixel size is ``from_um`` (y, x), and this view's is ``to_um``. A crop equals the
    same crop of ``resample.to_pixel_size`` of the whole plane (to ~1e-6 of the range),
    which ``np.asarray`` computes; row slices stay lazy, as the store's own planes do.
    """

    def __init__(self, source, from_um: tuple[float, float], to_um: float,
                 top: int = 0, shape: tuple[int, int] | None = None) -> None:
        self.source, self.from_um, self.to_um, self.top = source, from_um, to_um, top
        self.full_shape = resample.model_shape(tuple(source.shape), from_um, to_um)
        self.shape = self.full_shape if shape is None else shape

    def _band(self, start: int, stop: int) -> ResampledPlane:
        return ResampledPlane(self.source, self.from_um, self.to_um, self.top + start,
                              (stop - start, self.shape[1]))

    def _region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        start, shape = (self.top + y0, x0), (y1 - y0, x1 - x0)
        ya, yb = resample.input_span(start[0], start[0] + shape[0], self.source.shape[0],
                                     self.from_um[0], self.to_um)
        xa, xb = resample.input_span(start[1], start[1] + shape[1], self.source.shape[1],
                                     self.from_um[1], self.to_um)
        region = np.asarray(self.source[ya:yb, xa:xb], np.float32)
        return resample.region_to_pixel_size(
            region, self.from_um, self.to_um, full_shape=tuple(self.source.shape),
            region_start=(ya, xa), out_start=start, out_shape=shape)


class StoredImages(ImageStore):
    """Planes from a packed store (``data.store``): statistics read, not computed.

    :meth:`get` decodes a whole plane (validation); :meth:`patch_plane` returns a lazy view
    whose crops decode only the chunks they touch (training patches). With ``resample_um``
    the planes are seen at that pixel size (:class:`ResampledPlane`); the normalisation
    statistics and range stay those of the plane as stored, as the container normalises
    before it resamples.
    """

    PIXEL_SIZE_FROM = "the index"

    def __init__(self, path: str | Path, low: float, high: float,
                 resample_um: float | None = None) -> None:
        from lightmycells.data.store import Store, StoreError

        super().__init__(low, high, cache=False, resample_um=resample_um)
        try:
            self.data = Store(path)
        except (StoreError, OSError) as exc:
            raise DataError(str(exc)) from None
        self.root = Path(self.data.index["source"])
        stored = self.data.index.get("pixel_size_um")
        if stored and resample_um and resample_um < stored * (1 - resample.TOLERANCE):
            raise DataError(f"{path}: holds planes packed at {stored:g} µm; data.resample_um "
                            f"{resample_um:g} would enlarge them, without the detail they "
                            f"lost: pack at {resample_um:g} µm (pack --pixel-um) or from "
                            f"the stored pixels")

    def _plane(self, source: Source, lazy: bool,
               pixel_size: tuple[float, float] | None) -> Plane | None:
        if isinstance(source, tuple):
            raise DataError("data.store serves single planes (data.zstack plane or best)")
        path = Path(source)
        rel = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else ""
        if rel not in self.data.refs:
            return None  # not packed (e.g. a data.pairs image): read the file itself
        ref = self.data.ref(rel)
        low = ref.percentile(self.normalizer.low)
        spread = ref.percentile(self.normalizer.high) - low
        if lazy:
            pixels = self.data.plane(rel)
            if self._resamples(pixel_size, path):
                pixels = ResampledPlane(pixels, pixel_size, self.resample_um)
        else:
            pixels = self._resampled(self.data.read(rel).astype(np.float32), pixel_size, path)
        return Plane(pixels, low, spread, ref.stats["min"], ref.stats["max"])  # type: ignore

    def get(self, source: Source, pixel_size: tuple[float, float] | None = None) -> Plane:
        """The whole plane of ``source`` (an absolute path under the store's source root)."""
        return self._plane(source, False, pixel_size) or super().get(source, pixel_size)

    def patch_plane(self, source: Source,
                    pixel_size: tuple[float, float] | None = None) -> Plane:
        """The plane as a lazy array: crops read only their chunks."""
        return self._plane(source, True, pixel_size) or super().get(source, pixel_size)


def stored_fovs(path: str | Path, modalities: Iterable[Modality] | None = None,
                ) -> list[FieldOfView]:
    """The fields of view of a packed store's index (paths under its source root)."""
    from lightmycells.data.store import Store, StoreError

    try:
        store = Store(path)
    except (StoreError, OSError) as exc:
        raise DataError(str(exc)) from None
    fovs = _indexed_fovs(store.fovs, Path(store.index["source"]), modalities)
    if not fovs:
        raise DataError(f"{path}: no field of view in the store")
    return fovs


def _indexed_fovs(entries: Iterable[dict], root: Path,
                  modalities: Iterable[Modality] | None) -> list[FieldOfView]:
    """Fields of view from ``python -m lightmycells.data index`` entries (quirks left out)."""
    wanted = set(modalities or Modality)
    fovs = []
    for f in entries:
        if Modality(f["modality"]) not in wanted:
            continue
        size = f.get("pixel_size_um")
        fovs.append(FieldOfView(
            study=f["study"], image_id=f["image_id"], modality=Modality(f["modality"]),
            planes=tuple(root / p for p in f["planes"]), z=tuple(f["z"]),
            targets={Organelle(o): root / p for o, p in f["targets"].items()},
            pixel_size_um=(size, size) if size else None,
        ))
    return fovs


def image_store(cfg: DataConfig) -> ImageStore:
    """The plane reader ``cfg`` asks for: the packed store, or the TIFFs themselves."""
    if cfg.store is not None:
        return StoredImages(cfg.store, cfg.norm_low, cfg.norm_high, cfg.resample_um)
    return ImageStore(cfg.norm_low, cfg.norm_high, cfg.cache, cfg.resample_um)


def _read_plane(path: Path) -> np.ndarray:
    """One 2D plane as float32 (TIFF, OME-TIFF or PNG for pairs CSVs); errors name the file."""
    try:
        return read_plane(path).pixels
    except ome.ImageError as exc:
        raise DataError(str(exc)) from None


def input_source(fov: FieldOfView, mode: ZStack, rng: np.random.Generator | None = None) -> Source:
    """What the model's input is read from under ``data.zstack``.

    ``plane``: a random plane when ``rng`` is given (training), else the validation plane;
    ``best``: the validation plane (``best_z.csv``, else the middle one); ``mip``: all planes.
    """
    if mode == ZStack.MIP:
        return fov.planes if len(fov.planes) > 1 else fov.planes[0]
    if mode == ZStack.PLANE and rng is not None:
        return fov.planes[int(rng.integers(len(fov.planes)))]
    return fov.validation_plane()


def _crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """``size``² crop at (top, left) of a reflect-padded view of ``image`` (Y, X)."""
    pad_y, pad_x = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_y or pad_x:
        image = np.pad(image, ((0, pad_y), (0, pad_x)), mode="reflect")
    return image[top : top + size, left : left + size]


def _gamma_normalized(plane: Plane, crop: np.ndarray, gamma: float) -> np.ndarray:
    """Normalise ``crop`` after a gamma curve on the plane's [min, max] range.

    Percentiles commute with monotonic maps, so mapping the stored percentiles through the
    same curve gives exactly the percentile normalisation of the gamma-corrected image.
    Without a curve (gamma 1) the crop gets the engine's normalisation, bit for bit.
    """
    if gamma == 1.0:
        return plane.normalized(crop)
    span = max(plane.vmax - plane.vmin, normalize.EPS)

    def curve(v: np.ndarray | float) -> np.ndarray:
        return np.clip((np.asarray(v, np.float32) - plane.vmin) / span, 0.0, 1.0) ** gamma

    low, high = curve(plane.offset), curve(plane.offset + plane.spread)
    return _Fixed(float(low), float(high - low)).before(curve(crop))[0]


def _elastic(stack: np.ndarray, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Apply one smooth random displacement to every channel of ``stack`` (C, Y, X)."""
    shape = stack.shape[1:]
    dy, dx = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, shape), ELASTIC_SIGMA) for _ in range(2)
    )
    scale = alpha / max(np.abs(dy).max(), np.abs(dx).max(), normalize.EPS)
    yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    coords = [yy + scale * dy, xx + scale * dx]
    return np.stack([
        ndimage.map_coordinates(c, coords, order=1, mode="reflect") for c in stack
    ]).astype(np.float32)


def _dihedral(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 flips/rotations, applied to every channel of ``stack`` (C, Y, X)."""
    stack = np.rot90(stack, int(rng.integers(4)), axes=(-2, -1))
    if rng.integers(2):
        stack = stack[..., ::-1]
    return np.ascontiguousarray(stack)


def training_rows(cfg: DataConfig, height: int) -> int:
    """Rows of an image that training patches may use (the first ``rows``).

    All of them, or with ``split: region`` those above the held-out bottom ``val_fraction``
    of the rows, which validation scores.
    """
    if cfg.split != "region":
        return height
    return max(1, height - math.ceil(cfg.val_fraction * height))


class PatchDataset(Dataset):
    """Augmented training patches; item ``i`` is a pure function of ``(seed, i)``.

    Returns ``(x (1, P, P), y (C, P, P), mask (C,))`` float32 tensors, ``C`` the number of
    organelles; ``y[c]`` is zeros and ``mask[c] = 0`` when that target does not exist. With
    ``codes``, a fourth tensor: the field of view's one-hot modality code ``(K,)``
    (:mod:`lightmycells.train.modality`).
    """

    def __init__(
        self, fovs: Sequence[FieldOfView], organelles: Sequence[Organelle], cfg: DataConfig,
        *, seed: int, length: int, store: ImageStore | None = None, codes: bool = False,
    ) -> None:
        self.codes = codes
        self.fovs = list(fovs)
        self.organelles = list(organelles)
        self.cfg = cfg
        self.seed = seed
        self.length = length
        self.weights = sampling_weights(self.fovs, self.organelles)
        self.cumulative = np.cumsum(self.weights)
        self.store = store or image_store(cfg)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng((self.seed, index))
        pick = int(np.searchsorted(self.cumulative, rng.random()))
        fov = self.fovs[min(pick, len(self.fovs) - 1)]
        plane = self.store.patch_plane(input_source(fov, self.cfg.zstack, rng),
                                       fov.pixel_size_um)
        size, rows = self.cfg.patch, training_rows(self.cfg, plane.pixels.shape[0])
        top = int(rng.integers(max(rows - size, 0) + 1))
        left = int(rng.integers(max(plane.pixels.shape[1] - size, 0) + 1))
        aug = self.cfg.augment
        x = _gamma_normalized(
            plane, _crop(plane.pixels[:rows], top, left, size), _draw_gamma(rng, aug)
        )
        x = x * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + rng.uniform(
            -aug.brightness, aug.brightness
        )
        targets, mask = [], []
        for organelle in self.organelles:
            if organelle in fov.targets:
                target = self.store.patch_plane(fov.targets[organelle], fov.pixel_size_um)
                targets.append(target.normalized(_crop(target.pixels[:rows], top, left, size)))
                mask.append(1.0)
            else:
                targets.append(np.zeros((size, size), np.float32))
                mask.append(0.0)
        stack = np.concatenate([x[None], np.stack(targets)]).astype(np.float32)  # (1+C, P, P)
        if aug.elastic > 0 and rng.random() < aug.elastic:
            stack = _elastic(stack, rng, aug.elastic_alpha)
        if aug.dihedral:
            stack = _dihedral(stack, rng)
        items = (
            torch.from_numpy(stack[:1].copy()),
            torch.from_numpy(stack[1:].copy()),
            torch.tensor(mask, dtype=torch.float32),
        )
        if self.codes:
            items += (modality_code(fov.modality),)
        return items


def _draw_gamma(rng: np.random.Generator, aug: AugmentConfig) -> float:
    if aug.gamma <= 0:
        return 1.0
    bound = math.log1p(aug.gamma)
    return float(math.exp(rng.uniform(-bound, bound)))
