"""Scenes: cells and their organelles in physical units, rasterised on a pixel grid.

A :class:`Scene` holds what the two imaging paths need:

* ``density[organelle]`` — where the stain would be (relative units, ~1 at an isolated
  structure), the input of the fluorescence path;
* ``opd_um`` — the optical path difference Σ Δn·thickness (µm) and ``absorbance`` (natural
  log of the amplitude attenuation), the input of the transmitted-light path.

Geometry is drawn in micrometres and sampled at the study's pixel size, so the same scene
parameters give cells of the same physical size at any pixel size. Filaments (mitochondria,
microtubules, stress fibres) are vectorised random walks splatted onto the grid and blurred
to their physical width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

import numpy as np
from scipy import ndimage

from lightmycells.vocab import Organelle

# Refractive-index increments over the medium (n ≈ 1.335), typical of the literature on
# quantitative phase imaging: cytoplasm ~1.36–1.37, nucleus a little denser, nucleoli densest.
DN_CYTOPLASM = 0.022
DN_NUCLEUS = 0.014
DN_NUCLEOLUS = 0.03
# Optical path (µm) per unit of organelle density. Mitochondria (Δn ≈ 0.05 over ~0.4 µm) are
# clearly visible in phase; stress fibres (bundles ~0.2 µm) less; a single microtubule (25 nm)
# would be invisible, so tubulin gets the weak-but-present contrast of bundled arrays — a few
# per cent in phase contrast, which amplifies phase by 2/ring amplitude.
OPD_PER_DENSITY_UM = {
    Organelle.MITOCHONDRIA: 0.02,
    Organelle.TUBULIN: 0.0012,
    Organelle.ACTIN: 0.004,
}
# Weak absorption (natural-log amplitude per unit): gives bright field its in-focus contrast.
ABSORBANCE_PER_DENSITY = {
    Organelle.NUCLEUS: 0.03,
    Organelle.MITOCHONDRIA: 0.02,
    Organelle.TUBULIN: 0.0,
    Organelle.ACTIN: 0.005,
}
ABSORBANCE_PER_UM_CELL = 0.004
ABSORBANCE_NUCLEOLUS = 0.04

EDGE_UM = 0.4  # width of the soft cell edge
CORTEX_UM = 0.35  # thickness of the cortical actin band
BOUNDARY_SAMPLES = 2048
STEP_PX = 0.5  # filament sampling step, in pixels (dense enough for bilinear splatting)
MITO_WIDTH_UM = (0.3, 0.5)
MITO_PERSISTENCE_UM = 2.0
MT_PERSISTENCE_UM = 15.0
FIBRE_PERSISTENCE_UM = 60.0
# Neurites: ~1–2 µm wide, ~1 µm thick processes that run straight for tens of µm, packed
# with microtubule bundles (hence bright in tubulin, e.g. TuJ1) and ending in actin-rich
# growth cones.
NEURITE_PERSISTENCE_UM = 40.0
NEURITE_WIDTH_UM = (1.0, 2.0)
NEURITE_HEIGHT_UM = 0.8
NEURITE_TUBULIN = 1.5
GROWTH_CONE_UM = 1.5  # Gaussian radius of a growth cone
NEURITE_MITO_PER_UM = 0.08  # mitochondria per µm of neurite


class CellType(StrEnum):
    """Cell morphologies (the clean preset uses only ``generic``)."""

    GENERIC = "generic"  # fibroblast-like: elongated, irregular, spread
    EPITHELIAL = "epithelial"  # wide, flat, rounded-polygonal, growing in islands
    ROUND = "round"  # rounded-up: small, tall, smooth
    NEURON = "neuron"  # small soma, large nucleus, long branching neurites


@dataclass(frozen=True)
class CellParams:
    """How cells look in one study (sampled per study by :mod:`.study`).

    Attributes
    ----------
    radius_um:
        Median cell radius.
    coverage:
        Target fraction of the field covered by cells (sets the cell count).
    elongation:
        Largest aspect ratio of a cell.
    height_um:
        Peak cell thickness.
    nucleus_fraction:
        Nucleus radius relative to the cell radius.
    mito_per_um2:
        Mitochondria per µm² of cell area.
    microtubules:
        Microtubules per cell.
    stress_fibres:
        Stress fibres per cell.
    roughness:
        Amplitude of the outline's angular harmonics (0 is an ellipse).
    packing:
        Closest allowed distance between two cell centres, as a fraction of the sum of their
        radii (below 1 cells overlap at the edges: touching, confluent).
    clustering:
        Probability that a cell is placed against an already placed one (islands, colonies,
        clustered nuclei) rather than anywhere.
    cell_type:
        The morphology (only labels the study; shapes come from the numbers above).
    neurites:
        Mean number of neurites per cell (0: none).
    neurite_length_um:
        Median neurite length.
    """

    radius_um: float = 10.0
    coverage: float = 0.4
    elongation: float = 1.8
    height_um: float = 4.0
    nucleus_fraction: float = 0.42
    mito_per_um2: float = 0.08
    microtubules: int = 60
    stress_fibres: int = 10
    roughness: float = 0.35
    packing: float = 0.8
    clustering: float = 0.0
    cell_type: CellType = CellType.GENERIC
    neurites: float = 0.0
    neurite_length_um: float = 80.0


@dataclass
class Scene:
    """One field of view, rasterised.

    Attributes
    ----------
    pixel_size_um:
        Pixel size the maps were sampled at.
    density:
        Per organelle, float32 ``(Y, X)`` stain density (relative units).
    thickness_um:
        Cell thickness (µm), for diffuse cytoplasmic background in fluorescence.
    opd_um:
        Optical path difference (µm) relative to the medium.
    absorbance:
        Natural-log amplitude attenuation.
    """

    pixel_size_um: float
    density: dict[Organelle, np.ndarray]
    thickness_um: np.ndarray
    opd_um: np.ndarray
    absorbance: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(Y, X)`` in pixels."""
        h, w = self.opd_um.shape
        return h, w


@dataclass(frozen=True)
class Blob:
    """An irregular ellipse: radius modulated by a few angular harmonics, then stretched."""

    cx: float
    cy: float
    radius: float
    angle: float
    stretch: float
    amps: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, cx: float, cy: float, radius: float,
               stretch: float, roughness: float) -> Blob:
        """A blob with random orientation and harmonics 2–5 of total amplitude ~roughness."""
        k = np.arange(2, 6)
        return cls(cx, cy, radius, rng.uniform(0, np.pi), stretch,
                   rng.normal(0, roughness, k.size) / k, rng.uniform(0, 2 * np.pi, k.size))

    @property
    def extent(self) -> float:
        """A radius (µm) that certainly contains the blob."""
        return self.radius * np.sqrt(self.stretch) * (1 + np.abs(self.amps).sum())

    def _frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        q = np.sqrt(self.stretch)
        return (c * dx + s * dy) / q, (-s * dx + c * dy) * q

    def boundary(self, theta: np.ndarray) -> np.ndarray:
        """Boundary radius (in the blob's unstretched frame) at polar angle ``theta``."""
        k = np.arange(2, 6).reshape((-1,) + (1,) * np.ndim(theta))
        amps = self.amps.reshape(k.shape)
        phases = self.phases.reshape(k.shape)
        return self.radius * (1 + (amps * np.cos(k * theta + phases)).sum(axis=0))

    @cached_property
    def _table(self) -> np.ndarray:
        """The boundary sampled at ``BOUNDARY_SAMPLES`` angles (float32), for fast lookups."""
        theta = np.linspace(-np.pi, np.pi, BOUNDARY_SAMPLES + 1)
        return self.boundary(theta).astype(np.float32)

    def polar(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(s, rb)``: radius normalised by the boundary (<1 inside) and the boundary radius."""
        u, v = self._frame(x, y)
        # nearest-sample lookup: 2048 samples put the error far below a pixel
        index = ((np.arctan2(v, u) + np.pi) * (BOUNDARY_SAMPLES / (2 * np.pi)) + 0.5)
        rb = self._table[index.astype(np.intp)]
        return np.hypot(u, v) / rb, rb

    def point(self, s: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map normalised polar coordinates back to ``(x, y)`` µm."""
        r = s * self.boundary(theta)
        u, v = r * np.cos(theta), r * np.sin(theta)
        q = np.sqrt(self.stretch)
        u, v = u * q, v / q
        c, s_ = np.cos(self.angle), np.sin(self.angle)
        return self.cx + c * u - s_ * v, self.cy + s_ * u + c * v


@dataclass(frozen=True)
class Cell:
    """A cell: outline, nucleus, nucleoli, centrosome and height."""

    body: Blob
    nucleus: Blob
    nucleoli: tuple[Blob, ...]
    centrosome: tuple[float, float]
    height_um: float


def make_cells(rng: np.random.Generator, extent_um: tuple[float, float],
               params: CellParams) -> list[Cell]:
    """Place cells over a field of ``extent_um`` (y, x), including some cut by the border.

    The first cell is centred inside the field, so no field of view is empty (the real
    data's fields of view were chosen because they contain cells).
    """
    h, w = extent_um
    margin = params.radius_um
    area = (h + 2 * margin) * (w + 2 * margin)
    n = max(1, rng.poisson(params.coverage * area / (np.pi * params.radius_um**2)))
    xs, ys, rs = np.empty(n), np.empty(n), np.empty(n)
    count = 0
    for _ in range(n * 6):  # rejection sampling: cells touch but do not pile up
        if count >= n:
            break
        r = params.radius_um * float(np.exp(rng.normal(0, 0.25)))
        m = -0.0 if not count else margin
        if params.clustering > 0 and count and rng.random() < params.clustering:
            # against a placed cell: colonies, islands, nuclei that touch
            j = int(rng.integers(count))
            d = (r + rs[j]) * rng.uniform(params.packing, params.packing + 0.25)
            a = rng.uniform(0, 2 * np.pi)
            c = (xs[j] + d * np.cos(a), ys[j] + d * np.sin(a))
        else:
            c = (rng.uniform(-m, w + m), rng.uniform(-m, h + m))
        if np.all(np.hypot(c[0] - xs[:count], c[1] - ys[:count])
                  > params.packing * (r + rs[:count])):
            xs[count], ys[count], rs[count] = c[0], c[1], r
            count += 1
    # Python floats, as before vectorising: a NumPy float64 scalar would promote the float32
    # pixel grids to float64 (NEP 50) and change the clean preset's bytes
    return [_make_cell(rng, (float(xs[i]), float(ys[i])), float(rs[i]), params)
            for i in range(count)]


def _nucleolus(rng: np.random.Generator, nucleus: Blob) -> Blob:
    x, y = nucleus.point(np.array(rng.uniform(0, 0.6)), np.array(rng.uniform(0, 2 * np.pi)))
    return Blob.random(rng, float(x), float(y), radius=rng.uniform(0.5, 1.2),
                       stretch=rng.uniform(1.0, 1.6), roughness=0.15)


def _make_cell(rng: np.random.Generator, centre: tuple[float, float], radius: float,
               params: CellParams) -> Cell:
    stretch = rng.uniform(1.0, params.elongation)
    body = Blob.random(rng, centre[0], centre[1], radius, stretch, roughness=params.roughness)
    # nucleus: off-centre inside the body, less elongated and smoother
    nr = radius * params.nucleus_fraction * float(np.exp(rng.normal(0, 0.1)))
    off = rng.uniform(0, 0.35)
    nx, ny = body.point(np.array(off), np.array(rng.uniform(0, 2 * np.pi)))
    nucleus = Blob.random(rng, float(nx), float(ny), nr, rng.uniform(1.0, 1.5), roughness=0.1)
    nucleoli = tuple(_nucleolus(rng, nucleus) for _ in range(rng.integers(1, 5)))
    # centrosome beside the nucleus, on the side away from the cell centre
    theta = np.arctan2(ny - centre[1], nx - centre[0]) + rng.normal(0, 0.5)
    cs = (nx + 1.1 * nr * np.cos(theta), ny + 1.1 * nr * np.sin(theta))
    height = params.height_um * float(np.exp(rng.normal(0, 0.15)))
    return Cell(body, nucleus, nucleoli, (float(cs[0]), float(cs[1])), height)


# --------------------------------------------------------------------------- rasterising


def _window(blob: Blob, shape: tuple[int, int], ps: float, pad_um: float = 0.0):
    """Pixel slices covering the blob and the pixel-centre coordinates (µm) inside them."""
    r = blob.extent + pad_um
    y0, y1 = (max(0, int((blob.cy - r) / ps)), min(shape[0], int((blob.cy + r) / ps) + 2))
    x0, x1 = (max(0, int((blob.cx - r) / ps)), min(shape[1], int((blob.cx + r) / ps) + 2))
    if y0 >= y1 or x0 >= x1:
        return None
    y = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * ps)[:, None]
    x = ((np.arange(x0, x1, dtype=np.float32) + 0.5) * ps)[None, :]
    return (slice(y0, y1), slice(x0, x1)), x, y


def _soft_inside(s: np.ndarray, rb: np.ndarray, edge_um: float) -> np.ndarray:
    """1 well inside, 0 outside, a linear ramp ``edge_um`` wide at the boundary."""
    return np.clip((1 - s) * rb / edge_um, 0, 1)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (float32)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_px)
    return noise / max(float(noise.std()), 1e-6)


class _Splatter:
    """Collect weighted points (µm); splat them once with bilinear weights and blur."""

    def __init__(self, shape: tuple[int, int], ps: float):
        self.shape, self.ps = shape, ps
        self.points: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | float) -> None:
        self.points.append((x, y, np.broadcast_to(np.float32(weight), x.shape)))

    def blurred(self, sigma_px: float) -> np.ndarray:
        """The points splatted and blurred; a line of unit weight peaks at ~1."""
        h, w = self.shape
        grid = np.zeros(h * w, np.float64)
        if self.points:
            x, y, weight = (np.concatenate(a) for a in zip(*self.points, strict=True))
            fx, fy = x / self.ps - 0.5, y / self.ps - 0.5
            ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
            ax, ay = fx - ix, fy - iy
            for dy, dx, wgt in ((0, 0, (1 - ay) * (1 - ax)), (0, 1, (1 - ay) * ax),
                                (1, 0, ay * (1 - ax)), (1, 1, ay * ax)):
                yy, xx = iy + dy, ix + dx
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                grid += np.bincount((yy * w + xx)[ok], (weight * wgt)[ok], minlength=h * w)
        return ndimage.gaussian_filter(grid.reshape(self.shape), sigma_px).astype(np.float32)


def _walks(rng: np.random.Generator, x0: np.ndarray, y0: np.ndarray, angle: np.ndarray,
           n_steps: int, step_um: float, persistence_um: float,
           curvature: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Worm-like chains: ``(n, n_steps)`` x and y (µm) starting at ``(x0, y0)``."""
    n = x0.size
    turns = rng.normal(0, np.sqrt(step_um / persistence_um), (n, n_steps)).astype(np.float32)
    turns += np.asarray(curvature, np.float32).reshape(-1, 1) * step_um
    turns[:, 0] = 0
    theta = angle.reshape(-1, 1) + np.cumsum(turns, axis=1)
    # position i is the start plus steps 1 … i (step 0 is the start itself)
    dx = step_um * np.cos(theta)
    dy = step_um * np.sin(theta)
    x = x0.reshape(-1, 1) + np.cumsum(dx, axis=1) - dx[:, :1]
    y = y0.reshape(-1, 1) + np.cumsum(dy, axis=1) - dy[:, :1]
    return x, y


def _alive_inside(blob: Blob, x: np.ndarray, y: np.ndarray, limit: float) -> np.ndarray:
    """True along each walk until it first leaves the blob (``s >= limit``)."""
    s, _ = blob.polar(x, y)
    return np.cumprod(s < limit, axis=1).astype(bool)


def make_scene(rng: np.random.Generator, shape: tuple[int, int], pixel_size_um: float,
               params: CellParams) -> Scene:
    """Draw a random field of view of ``shape`` pixels at ``pixel_size_um``.

    Parameters
    ----------
    rng:
        Source of randomness; the scene is a pure function of its state.
    shape:
        ``(Y, X)`` in pixels.
    pixel_size_um:
        Pixel size (µm) the maps are sampled at.
    params:
        The study's cell parameters.
    """
    ps = float(pixel_size_um)
    h, w = shape
    cells = make_cells(rng, (h * ps, w * ps), params)
    thickness = np.zeros(shape, np.float32)
    nucleus = np.zeros(shape, np.float32)
    nucleolus = np.zeros(shape, np.float32)
    cortex = np.zeros(shape, np.float32)
    step = STEP_PX * ps
    mito_width = rng.uniform(*MITO_WIDTH_UM)
    mito = _Splatter(shape, ps)
    tubes = _Splatter(shape, ps)
    fibres = _Splatter(shape, ps)
    # A line splatted with weight step_px · σ√(2π) peaks at 1 after a σ blur.
    sigma = {"mito": mito_width / 2.5 / ps, "mt": max(0.6, 0.03 / ps), "fibre": max(0.7, 0.1 / ps)}
    unit = {k: STEP_PX * s * np.sqrt(2 * np.pi) for k, s in sigma.items()}
    neurites = _Neurites(rng, shape, ps, step) if params.neurites > 0 else None
    for cell in cells:
        _rasterise_cell(cell, shape, ps, thickness, nucleus, nucleolus, cortex)
        _mitochondria(rng, cell, params, step, mito, unit["mito"])
        _microtubules(rng, cell, params, step, tubes, unit["mt"])
        _stress_fibres(rng, cell, params, step, fibres, unit["fibre"])
        if neurites is not None:
            neurites.grow(cell, params, mito, unit["mito"])
    extra_tubulin = extra_actin = np.float32(0)
    if neurites is not None:
        process, cones = neurites.maps()
        thickness = np.maximum(thickness, NEURITE_HEIGHT_UM * process + 0.3 * cones)
        extra_tubulin, extra_actin = NEURITE_TUBULIN * process, 0.2 * process + cones
    chromatin = 0.85 + 0.15 * smooth_noise(rng, shape, 0.4 / ps)
    in_cell = np.clip(thickness / 0.3, 0, 1)
    density = {
        Organelle.NUCLEUS: np.clip(nucleus * chromatin * (1 - 0.6 * np.clip(nucleolus, 0, 1)), 0,
                                   None),
        Organelle.MITOCHONDRIA: mito.blurred(sigma["mito"]) * in_cell,
        Organelle.TUBULIN: tubes.blurred(sigma["mt"]) * in_cell + extra_tubulin,
        Organelle.ACTIN: fibres.blurred(sigma["fibre"]) * in_cell + 0.8 * cortex + extra_actin,
    }
    # cytoplasmic granularity, unrelated to the four stains: keeps the task honest
    granular = 1 + 0.05 * smooth_noise(rng, shape, 0.6 / ps)
    opd = DN_CYTOPLASM * thickness * granular
    opd += DN_NUCLEUS * nucleus * np.float32(params.height_um * 0.7)
    opd += DN_NUCLEOLUS * nucleolus * np.float32(1.0)
    absorbance = ABSORBANCE_PER_UM_CELL * thickness + ABSORBANCE_NUCLEOLUS * nucleolus
    for organelle, coeff in OPD_PER_DENSITY_UM.items():
        opd += coeff * density[organelle]
    for organelle, coeff in ABSORBANCE_PER_DENSITY.items():
        absorbance += coeff * density[organelle]
    return Scene(ps, {o: d.astype(np.float32) for o, d in density.items()},
                 thickness, opd.astype(np.float32), absorbance.astype(np.float32))


def _rasterise_cell(cell: Cell, shape, ps, thickness, nucleus, nucleolus, cortex) -> None:
    win = _window(cell.body, shape, ps)
    if win is None:
        return
    sl, x, y = win
    s, rb = cell.body.polar(x, y)
    inside = _soft_inside(s, rb, EDGE_UM)
    # a thin lamella everywhere plus a dome that peaks over the middle
    dome = np.clip(1 - s**2, 0, None) ** 1.5
    thickness[sl] = np.maximum(thickness[sl], inside * (0.25 + (cell.height_um - 0.25) * dome))
    band = inside * np.exp(-np.clip(1 - s, 0, None) * rb / CORTEX_UM)
    cortex[sl] = np.maximum(cortex[sl], band)
    sn, rbn = cell.nucleus.polar(x, y)
    nuc = _soft_inside(sn, rbn, 0.3) * np.sqrt(np.clip(1 - sn**2, 0, None)) * inside
    nucleus[sl] = np.maximum(nucleus[sl], nuc)
    for blob in cell.nucleoli:
        sb, rbb = blob.polar(x, y)
        nucleolus[sl] = np.maximum(nucleolus[sl], _soft_inside(sb, rbb, 0.3) * (nuc > 0.2))


def _mitochondria(rng, cell: Cell, params: CellParams, step: float, out: _Splatter,
                  unit: float) -> None:
    area = np.pi * cell.body.radius**2
    n = rng.poisson(params.mito_per_um2 * area)
    if n == 0:
        return
    x0, y0 = cell.body.point(np.sqrt(rng.uniform(0.02, 0.8, n)), rng.uniform(0, 2 * np.pi, n))
    sn, _ = cell.nucleus.polar(x0, y0)
    keep = (sn > 1.05) | (rng.random(n) < 0.15)  # mostly beside, rarely over the nucleus
    x0, y0 = x0[keep], y0[keep]
    if x0.size == 0:
        return
    length = np.clip(rng.lognormal(np.log(2.0), 0.5, x0.size), 0.5, 8.0)
    n_steps = int(np.ceil(length.max() / step)) + 1
    curvature = rng.normal(0, 0.4, x0.size)
    x, y = _walks(rng, x0, y0, rng.uniform(0, 2 * np.pi, x0.size), n_steps, step,
                  MITO_PERSISTENCE_UM, curvature)
    alive = _alive_inside(cell.body, x, y, 0.95)
    alive &= (np.arange(n_steps) * step)[None, :] <= length[:, None]
    out.add(x[alive], y[alive], unit)


def _microtubules(rng, cell: Cell, params: CellParams, step: float, out: _Splatter,
                  unit: float) -> None:
    n = max(1, int(rng.poisson(params.microtubules)))
    x0 = cell.centrosome[0] + rng.normal(0, 0.3, n)
    y0 = cell.centrosome[1] + rng.normal(0, 0.3, n)
    n_steps = int(2.2 * cell.body.extent / step)
    x, y = _walks(rng, x0, y0, rng.uniform(0, 2 * np.pi, n), n_steps, step, MT_PERSISTENCE_UM)
    alive = _alive_inside(cell.body, x, y, 0.97)
    out.add(x[alive], y[alive], unit)


def _stress_fibres(rng, cell: Cell, params: CellParams, step: float, out: _Splatter,
                   unit: float) -> None:
    n = int(rng.poisson(params.stress_fibres))
    if n == 0:
        return
    body = cell.body
    # seeds spread across the cell's short axis; fibres run along its long axis both ways
    across = rng.uniform(-0.75, 0.75, n) * body.radius / np.sqrt(body.stretch)
    along = rng.normal(0, 0.2, n) * body.radius
    c, s = np.cos(body.angle), np.sin(body.angle)
    x0 = body.cx + c * along - s * across
    y0 = body.cy + s * along + c * across
    angle = body.angle + rng.normal(0, 0.12, n)
    weight = rng.uniform(0.5, 1.5, n)
    n_steps = int(1.2 * body.extent / step)
    for direction in (0.0, np.pi):
        x, y = _walks(rng, x0, y0, angle + direction, n_steps, step, FIBRE_PERSISTENCE_UM)
        alive = _alive_inside(body, x, y, 0.9)
        out.add(x[alive], y[alive], (unit * np.broadcast_to(weight[:, None], x.shape))[alive])


class _Neurites:
    """Neurites of neuron-like cells: branching worm-like processes with growth cones.

    Each neurite leaves the soma outwards, runs with a persistence of
    ``NEURITE_PERSISTENCE_UM`` for a log-normal length around ``neurite_length_um`` and may
    branch once; mitochondria sit along it, an actin-rich growth cone at each tip.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], ps: float,
                 step: float):
        self.rng, self.ps, self.step = rng, ps, step
        self.width_um = float(rng.uniform(*NEURITE_WIDTH_UM))
        self.process, self.cones = _Splatter(shape, ps), _Splatter(shape, ps)
        self.sigma = self.width_um / 2.5 / ps
        self.unit = STEP_PX * self.sigma * np.sqrt(2 * np.pi)

    def grow(self, cell: Cell, params: CellParams, mito: _Splatter, mito_unit: float) -> None:
        rng, step, body = self.rng, self.step, cell.body
        n = int(rng.poisson(params.neurites))
        if n == 0:
            return
        x0, y0 = body.point(np.full(n, 0.9), rng.uniform(0, 2 * np.pi, n))
        angle = np.arctan2(y0 - body.cy, x0 - body.cx) + rng.normal(0, 0.3, n)
        length = np.clip(rng.lognormal(np.log(params.neurite_length_um), 0.4, n), 10, 400)
        x, y, alive = self._walk(x0, y0, angle, length)
        tips = [self._tip(x, y, alive)]
        # one branch from 30–80 % along, for about half the neurites
        branch = np.flatnonzero(rng.random(n) < 0.5)
        if branch.size:
            at = (rng.uniform(0.3, 0.8, branch.size) * length[branch] / step).astype(int)
            side = rng.choice([-1, 1], branch.size) * rng.uniform(0.4, 1.0, branch.size)
            bl = (length[branch] - at * step) * rng.uniform(0.5, 1.0, branch.size)
            bx, by, balive = self._walk(x[branch, at], y[branch, at], angle[branch] + side, bl)
            tips.append(self._tip(bx, by, balive))
            x, y = np.concatenate([x[alive], bx[balive]]), np.concatenate([y[alive], by[balive]])
        else:
            x, y = x[alive], y[alive]
        self.process.add(x, y, self.unit)
        self._cones(np.concatenate([t[0] for t in tips]), np.concatenate([t[1] for t in tips]))
        # mitochondria along the neurite: short segments of its own path
        k = rng.poisson(NEURITE_MITO_PER_UM * x.size * step)
        if k and x.size > 8:
            start = rng.integers(0, x.size - 8, k)
            seg = start[:, None] + np.arange(int(rng.integers(3, 8)))[None, :]
            mito.add(x[seg].ravel(), y[seg].ravel(), mito_unit)

    def _walk(self, x0, y0, angle, length):
        n_steps = int(np.ceil(length.max() / self.step)) + 1
        x, y = _walks(self.rng, x0, y0, angle, n_steps, self.step, NEURITE_PERSISTENCE_UM)
        return x, y, (np.arange(n_steps) * self.step)[None, :] <= length[:, None]

    @staticmethod
    def _tip(x: np.ndarray, y: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last point of each walk (where its growth cone sits)."""
        last = alive.sum(axis=1) - 1
        rows = np.arange(x.shape[0])
        return x[rows, last], y[rows, last]

    def _cones(self, tx: np.ndarray, ty: np.ndarray) -> None:
        s = GROWTH_CONE_UM / self.ps
        self.cones.add(tx, ty, 2 * np.pi * s * s)  # a point of this weight peaks at 1

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """``(process, cones)``: neurite and growth-cone maps, each peaking at about 1."""
        return (np.clip(self.process.blurred(self.sigma), 0, 1.5),
                np.clip(self.cones.blurred(GROWTH_CONE_UM / self.ps), 0, 1.5))
