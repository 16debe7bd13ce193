"""``weights/manifest.json``: strict schema, file checks and routing by organelle, modality, scale.

The manifest lists one entry per ONNX file (keys in docs/ARCHITECTURE.md); routing is data,
not code. For (organelle, modality, pixel size) the first of these serves: an entry naming
the modality whose ``pixel_size_um_range`` holds the image's pixel size, a ``"*"`` entry
whose range holds it, an entry naming the modality without a range, a ``"*"`` entry without
a range; else :class:`RouteError` names what is missing. ``load`` rejects unknown keys,
missing files, wrong sha256 and ambiguous routes (two range-less entries, or two entries
with overlapping ranges, for the same organelle and modality), each with one line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lightmycells.engine import normalize
from lightmycells.engine.zstack import TRAINED, ZStack
from lightmycells.vocab import MODALITIES, ORGANELLES, Modality, Organelle

MANIFEST_NAME = "manifest.json"
ANY_MODALITY = "*"
_HASH_CHUNK = 1 << 20


class ManifestError(ValueError):
    """The manifest or a file it names is unusable; the message says which and why."""


class RouteError(LookupError):
    """No model serves an (organelle, modality) pair; the message names the pair."""


class PixelSizeRouteError(RouteError):
    """Models serve the pair, but only for pixel sizes this image lacks or lies outside of."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_file_name(value: str) -> str:
    """A plain relative path inside the weights folder (no absolute paths, no ``..``)."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be a file name inside the weights folder (got {value!r})")
    return value


class _Norm(BaseModel):
    # strict: a number written as a string or a boolean is refused, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PercentileNorm(_Norm):
    """``(x - p_low) / (p_high - p_low)`` with the image's percentiles, no clipping."""

    kind: Literal["percentile"]
    low: float = Field(default=2.0, ge=0.0, le=100.0, description="Lower percentile.")
    high: float = Field(default=99.8, ge=0.0, le=100.0, description="Upper percentile.")

    @model_validator(mode="after")
    def _ordered(self) -> PercentileNorm:
        if self.low >= self.high:
            raise ValueError(f"low must be below high (got low={self.low}, high={self.high})")
        return self

    def build(self) -> normalize.Normalizer:
        """The normaliser this spec describes."""
        return normalize.Percentile(low=self.low, high=self.high)


class ZScoreNorm(_Norm):
    """``(x - mean) / std``."""

    kind: Literal["zscore"]

    def build(self) -> normalize.Normalizer:
        """The normaliser this spec describes."""
        return normalize.ZScore()


class MinMaxNorm(_Norm):
    """``(x - min) / (max - min)``."""

    kind: Literal["minmax"]

    def build(self) -> normalize.Normalizer:
        """The normaliser this spec describes."""
        return normalize.MinMax()


class NoNorm(_Norm):
    """The image as float32."""

    kind: Literal["none"]

    def build(self) -> normalize.Normalizer:
        """The normaliser this spec describes."""
        return normalize.Identity()


#: The manifest's ``input_norm``: one of the kinds, told apart by ``kind``.
InputNorm = Annotated[PercentileNorm | ZScoreNorm | MinMaxNorm | NoNorm,
                      Field(discriminator="kind")]

#: ``[lo, hi)`` in µm; ``hi`` None: no upper bound.
PixelRange = tuple[float, float | None]


def effective_pixel_size(pixel_size_um: float | Sequence[float]) -> float:
    """The one size a (y, x) pixel is routed by: the geometric mean ``sqrt(y * x)``.

    It is the edge of a square pixel of the same area; a square pixel keeps its size exactly.
    """
    if isinstance(pixel_size_um, int | float):
        return float(pixel_size_um)
    y, x = (float(v) for v in pixel_size_um)
    return y if y == x else math.sqrt(y * x)


def holds(pixel_range: PixelRange, size_um: float) -> bool:
    """Whether ``lo <= size_um < hi`` (no upper bound when ``hi`` is None)."""
    lo, hi = pixel_range
    return lo <= size_um and (hi is None or size_um < hi)


def format_range(pixel_range: PixelRange | None) -> str:
    """``[0.05, 0.13)`` µm text of a range (``any`` for None, ``∞`` for no upper bound)."""
    if pixel_range is None:
        return "any"
    lo, hi = pixel_range
    return f"[{lo:g}, {'∞' if hi is None else f'{hi:g}'})"


def _overlap(a: PixelRange, b: PixelRange) -> bool:
    inf = math.inf
    return a[0] < (inf if b[1] is None else b[1]) and b[0] < (inf if a[1] is None else a[1])


class Fp16Variant(_Strict):
    """An optional float16 export of the same model, used on CUDA."""

    file: str = Field(description="ONNX file name, relative to the weights folder.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")

    _file = field_validator("file")(_check_file_name)


class ModelEntry(_Strict):
    """One ONNX model and the routes it serves (hashable by its unique ``name``)."""

    name: str = Field(min_length=1, description="Unique model name.")
    file: str = Field(description="ONNX file name, relative to the weights folder.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    organelles: tuple[Organelle, ...] = Field(
        min_length=1, description="Output channels in order, one organelle each.")
    modalities: tuple[Modality | Literal["*"], ...] = Field(
        min_length=1, description="Modalities served; '*' serves any not named elsewhere.")
    patch: int = Field(ge=16, le=8192, description="Tile edge the model was trained with.")
    overlap: float = Field(ge=0.0, lt=1.0, description="Tile overlap, fraction of patch.")
    pixel_size_um: float | None = Field(
        gt=0.0, description="Training pixel size in µm; null turns resampling off.")
    pixel_size_um_range: PixelRange | None = Field(
        default=None, description="Pixel sizes served, [lo, hi) µm (lo 0: no lower bound, "
        "hi null: no upper bound); null or absent: any pixel size, also none.")
    zstack: ZStack = Field(
        default=ZStack.PLANE, description="What the model was trained on: single planes, "
        "maximum projections or best-focus planes of Z-stacks (null: plane).")
    input_norm: InputNorm = Field(description="Input normalisation, told apart by 'kind'.")
    fp16: Fp16Variant | None = Field(default=None, description="Optional float16 variant.")

    _file = field_validator("file")(_check_file_name)

    @field_validator("organelles", "modalities")
    @classmethod
    def _unique(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists an item twice ({', '.join(map(str, value))})")
        return value

    @field_validator("zstack", mode="before")
    @classmethod
    def _zstack(cls, value: Any) -> Any:
        if value is None:
            return ZStack.PLANE
        if value not in TRAINED:
            raise ValueError(f"must be one of {', '.join(map(repr, TRAINED))} (got {value!r})")
        return value

    @field_validator("pixel_size_um_range")
    @classmethod
    def _range(cls, value: PixelRange | None) -> PixelRange | None:
        if value is not None:
            lo, hi = value
            if not lo >= 0 or (hi is not None and not hi > lo):
                raise ValueError(f"must be [lo, hi) µm with 0 <= lo < hi, or hi null "
                                 f"(got [{lo}, {hi}])")
        return value

    def __hash__(self) -> int:
        return hash(self.name)

    def channel(self, organelle: Organelle) -> int:
        """Index of ``organelle`` in the model's output channels."""
        return self.organelles.index(organelle)


class _ManifestDoc(_Strict):
    format: Literal[1]
    models: tuple[ModelEntry, ...] = Field(min_length=1)


class Route(NamedTuple):
    """One row of the routing table; ``model`` is None where nothing serves the row.

    ``pixel_sizes`` is what the row covers: ``"[lo, hi)"`` µm; ``"other"``, every pixel size
    outside the pair's ranges and an image without one; ``"any"``, the pair has no ranges.
    """

    organelle: Organelle
    modality: Modality
    model: ModelEntry | None
    pixel_sizes: str = "any"

    @property
    def missing(self) -> bool:
        """No entry at all serves the (organelle, modality) pair."""
        return self.model is None and self.pixel_sizes == "any"


def _modality_label(modality: Modality | str | None) -> str:
    return "unknown modality" if modality is None else str(modality)


def _size_label(pixel_size_um: float | Sequence[float]) -> str:
    size = effective_pixel_size(pixel_size_um)
    if isinstance(pixel_size_um, int | float) or pixel_size_um[0] == pixel_size_um[1]:
        return f"{size:.4g} µm"
    y, x = pixel_size_um
    return f"(y, x) = ({y:.4g}, {x:.4g}) µm, routed as their geometric mean {size:.4g} µm"


class Manifest:
    """A validated manifest and the folder its files live in.

    Attributes
    ----------
    weights_dir:
        Folder holding ``manifest.json`` and the ONNX files.
    models:
        The entries in file order.
    """

    def __init__(self, weights_dir: Path, models: Sequence[ModelEntry]) -> None:
        self.weights_dir = Path(weights_dir)
        self.models = tuple(models)
        self._check_routes_unambiguous()

    def fingerprint(self) -> str:
        """sha256 of every entry as validated — files' sha256 included — in file order.

        What ``--resume`` compares: it changes when any model file or any setting of an
        entry changes, whether the manifest came from ``manifest.json`` or a package.
        """
        entries = [m.model_dump(mode="json") for m in self.models]
        return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()

    def _check_routes_unambiguous(self) -> None:
        names = [m.name for m in self.models]
        for name in names:
            if names.count(name) > 1:
                raise ManifestError(f"{self._path}: model name {name!r} is used twice")
        claimed: dict[tuple[Organelle, str], list[ModelEntry]] = {}
        for entry in self.models:
            for organelle in entry.organelles:
                for modality in entry.modalities:
                    others = claimed.setdefault((organelle, modality), [])
                    for other in others:
                        self._check_pair(organelle, modality, other, entry)
                    others.append(entry)

    def _check_pair(self, organelle: Organelle, modality: str, a: ModelEntry,
                    b: ModelEntry) -> None:
        """Two entries may share a route only with disjoint pixel-size ranges."""
        ra, rb = a.pixel_size_um_range, b.pixel_size_um_range
        if ra is None and rb is None:
            raise ManifestError(f"{self._path}: route ({organelle}, {modality}) is claimed by "
                                f"both {a.name!r} and {b.name!r}")
        if ra is not None and rb is not None and _overlap(ra, rb):
            raise ManifestError(
                f"{self._path}: route ({organelle}, {modality}) is claimed by both {a.name!r} "
                f"{format_range(ra)} µm and {b.name!r} {format_range(rb)} µm: pixel-size "
                f"ranges of one route must not overlap")

    @property
    def _path(self) -> Path:
        return self.weights_dir / MANIFEST_NAME

    def _candidates(self, organelle: Organelle, modality: Modality | str | None
                    ) -> list[ModelEntry]:
        """Entries listing ``organelle``: those naming the modality first, then ``"*"``."""
        keys = ([] if modality is None else [str(modality)]) + [ANY_MODALITY]
        return [entry for key in keys for entry in self.models
                if organelle in entry.organelles and key in entry.modalities]

    @staticmethod
    def _pick(candidates: Sequence[ModelEntry], size_um: float | None) -> ModelEntry | None:
        """The first candidate whose range holds ``size_um``, else the first range-less one."""
        if size_um is not None:
            for entry in candidates:
                if entry.pixel_size_um_range is not None and holds(
                        entry.pixel_size_um_range, size_um):
                    return entry
        return next((e for e in candidates if e.pixel_size_um_range is None), None)

    def route(self, organelle: Organelle | str, modality: Modality | str | None,
              pixel_size_um: float | Sequence[float] | None = None) -> ModelEntry:
        """The entry serving ``organelle`` for ``modality`` at ``pixel_size_um``.

        ``modality`` None: unknown (only ``"*"`` entries serve). ``pixel_size_um``: the
        image's (y, x) pixel size or one number, µm; ranges hold its geometric mean; None:
        unknown (only range-less entries serve).

        Raises
        ------
        RouteError
            Naming the (organelle, modality) pair no entry serves.
        PixelSizeRouteError
            (a RouteError) When entries serve the pair but none for this pixel size; the
            message names the pixel size (or its absence) and the ranges there are.
        """
        organelle = Organelle(organelle)
        candidates = self._candidates(organelle, modality)
        size = None if pixel_size_um is None else effective_pixel_size(pixel_size_um)
        entry = self._pick(candidates, size)
        if entry is not None:
            return entry
        pair = f"({organelle}, {_modality_label(modality)})"
        if not candidates:
            raise RouteError(
                f"no model for {pair} in {self._path}: no entry lists '{organelle}' with "
                f"modality " + (f"{modality!s} or '*'" if modality is not None else "'*'"))
        ranges = ", ".join(f"{e.name!r} {format_range(e.pixel_size_um_range)} µm"
                           for e in candidates)
        if pixel_size_um is None:
            raise PixelSizeRouteError(
                f"no model for {pair}: the file states no pixel size, and the entries for it "
                f"in {self._path} serve only pixel-size ranges ({ranges})")
        raise PixelSizeRouteError(
            f"no model for {pair} at {_size_label(pixel_size_um)}: no pixel-size range in "
            f"{self._path} holds it ({ranges})")

    def routes(
        self, organelles: Iterable[Organelle | str], modality: Modality | str | None,
        pixel_size_um: float | Sequence[float] | None = None,
    ) -> dict[ModelEntry, list[Organelle]]:
        """Group the requested organelles by the model that serves them (each model runs once).

        Order follows the first requested organelle of each model.
        """
        grouped: dict[ModelEntry, list[Organelle]] = {}
        for organelle in organelles:
            entry = self.route(organelle, modality, pixel_size_um)
            grouped.setdefault(entry, []).append(Organelle(organelle))
        return grouped

    def routing_table(
        self,
        organelles: Iterable[Organelle] = ORGANELLES,
        modalities: Iterable[Modality] = MODALITIES,
    ) -> list[Route]:
        """Every (organelle, modality) pair with the model serving it, one row per range.

        A pair without ranges has one ``"any"`` row; a pair with ranges has one row per
        stretch of pixel sizes one ranged entry serves, then an ``"other"`` row (the
        range-less entry, or None).
        """
        return [row for organelle in organelles for modality in modalities
                for row in self._rows(Organelle(organelle), Modality(modality))]

    def _rows(self, organelle: Organelle, modality: Modality) -> list[Route]:
        candidates = self._candidates(organelle, modality)
        fallback = self._pick(candidates, None)
        ranged = [e.pixel_size_um_range for e in candidates if e.pixel_size_um_range]
        if not ranged:
            return [Route(organelle, modality, fallback)]
        # Every range edge splits the axis; the route is constant between consecutive edges
        # and found at the lower (inclusive) one.
        edges = sorted({v for r in ranged for v in r if v is not None})
        stretches: list[list[Any]] = []  # [entry, lo, hi]
        for lo, hi in zip(edges, [*edges[1:], None], strict=True):
            entry = self._pick(candidates, lo)
            if entry is None or entry.pixel_size_um_range is None:
                continue  # served as "other"
            if stretches and stretches[-1][0] is entry and stretches[-1][2] == lo:
                stretches[-1][2] = hi
            else:
                stretches.append([entry, lo, hi])
        rows = [Route(organelle, modality, entry, format_range((lo, hi)))
                for entry, lo, hi in stretches]
        return [*rows, Route(organelle, modality, fallback, "other")]


def format_routing_table(rows: Sequence[Route]) -> str:
    """Render routing-table rows as aligned text.

    ``MISSING`` where no entry serves the pair at all; ``-`` on an ``other`` row no
    range-less entry serves (images outside the ranges, or without a pixel size, fail).
    """
    def model(row: Route) -> str:
        if row.model is not None:
            return row.model.name
        return "MISSING" if row.missing else "-"

    lines = [("organelle", "modality", "µm/pixel", "model")]
    lines += [(str(r.organelle), str(r.modality), r.pixel_sizes, model(r)) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_NORM_KINDS = frozenset(normalize.NormKind)  # the union's tags, as pydantic names them


def _one_line(error: ValidationError, raw: Any) -> str:
    """First validation problem as ``models.0 (nuc).input_norm.low: <problem> (got '2')``.

    The entry's name follows its index when it has one; the union's ``kind`` tag pydantic
    puts in the location is left out (the entry's ``kind`` says it).
    """
    first = error.errors()[0]
    parts = [str(part) for part in first["loc"]]
    if "input_norm" in parts:
        i = parts.index("input_norm") + 1
        if i < len(parts) and parts[i] in _NORM_KINDS:
            del parts[i]
    location = ".".join(parts) or "(top level)"
    if len(parts) >= 2 and parts[0] == "models":
        try:
            name = raw["models"][int(parts[1])]["name"]
        except (KeyError, IndexError, TypeError, ValueError):
            name = None
        if isinstance(name, str) and name:
            location = ".".join([f"models.{parts[1]} ({name})", *parts[2:]])
    got = first.get("input")
    shown = ""
    if first["type"] != "missing" and not isinstance(got, dict | list):
        text = repr(got)
        shown = f" (got {text if len(text) <= 40 else text[:37] + '...'})"
    return f"{location}: {first['msg']}{shown}"


def _check_file(weights_dir: Path, where: str, file: str, expected: str) -> None:
    path = weights_dir / file
    if not path.is_file():
        raise ManifestError(f"{weights_dir / MANIFEST_NAME}: {where} names {file!r}, "
                            f"which does not exist in {weights_dir}")
    actual = sha256_file(path)
    if actual != expected:
        raise ManifestError(f"{path}: sha256 is {actual}, but {where} says {expected}")


def load(weights_dir: str | Path) -> Manifest:
    """Read and validate ``<weights_dir>/manifest.json``; check every file and its sha256.

    Raises
    ------
    ManifestError
        One line naming the file and the problem: missing or unreadable manifest, invalid
        JSON, an unknown or missing key, a bad value, a missing model file, a sha256
        mismatch, a duplicate name or an ambiguous route.
    """
    weights_dir = Path(weights_dir)
    path = weights_dir / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest (expected one in the weights folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    try:
        doc = _ManifestDoc.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"{path}: {_one_line(exc, raw)}") from None
    for i, entry in enumerate(doc.models):
        _check_file(weights_dir, f"models.{i} ({entry.name})", entry.file, entry.sha256)
        if entry.fp16 is not None:
            _check_file(weights_dir, f"models.{i}.fp16 ({entry.name})", entry.fp16.file,
                        entry.fp16.sha256)
    return Manifest(weights_dir, doc.models)
