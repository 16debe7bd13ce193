"""``weights/manifest.json``: strict schema, file checks and (organelle, modality) routing.

The manifest lists one entry per ONNX file (keys in docs/ARCHITECTURE.md); routing is data,
not code. For an (organelle, modality) the entry naming that modality serves, else the entry
naming ``"*"``, else :class:`RouteError` names the missing route. ``load`` rejects unknown
keys, missing files, wrong sha256 and ambiguous routes (two entries claiming the same
organelle for the same modality), each with one line naming the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lightmycells.engine import normalize
from lightmycells.vocab import MODALITIES, ORGANELLES, Modality, Organelle

MANIFEST_NAME = "manifest.json"
ANY_MODALITY = "*"
_HASH_CHUNK = 1 << 20


class ManifestError(ValueError):
    """The manifest or a file it names is unusable; the message says which and why."""


class RouteError(LookupError):
    """No model serves an (organelle, modality) pair; the message names the pair."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_file_name(value: str) -> str:
    """A plain relative path inside the weights folder (no absolute paths, no ``..``)."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be a file name inside the weights folder (got {value!r})")
    return value


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
    input_norm: dict[str, Any] = Field(description="Input normalisation (normalize.from_spec).")
    fp16: Fp16Variant | None = Field(default=None, description="Optional float16 variant.")

    _file = field_validator("file")(_check_file_name)

    @field_validator("organelles", "modalities")
    @classmethod
    def _unique(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists an item twice ({', '.join(map(str, value))})")
        return value

    @field_validator("input_norm")
    @classmethod
    def _norm(cls, value: dict[str, Any]) -> dict[str, Any]:
        normalize.from_spec(value)  # raises ValueError naming the bad key or kind
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
    """One row of the routing table; ``model`` is None when the route is missing."""

    organelle: Organelle
    modality: Modality
    model: ModelEntry | None


def _modality_label(modality: Modality | str | None) -> str:
    return "unknown modality" if modality is None else str(modality)


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

    def _check_routes_unambiguous(self) -> None:
        names = [m.name for m in self.models]
        for name in names:
            if names.count(name) > 1:
                raise ManifestError(f"{self._path}: model name {name!r} is used twice")
        claimed: dict[tuple[Organelle, str], str] = {}
        for entry in self.models:
            for organelle in entry.organelles:
                for modality in entry.modalities:
                    other = claimed.setdefault((organelle, modality), entry.name)
                    if other != entry.name:
                        raise ManifestError(
                            f"{self._path}: route ({organelle}, {modality}) is claimed by both "
                            f"{other!r} and {entry.name!r}")

    @property
    def _path(self) -> Path:
        return self.weights_dir / MANIFEST_NAME

    def route(self, organelle: Organelle | str, modality: Modality | str | None) -> ModelEntry:
        """The entry serving ``organelle`` for ``modality`` (None: modality unknown).

        Raises
        ------
        RouteError
            Naming the (organelle, modality) pair no entry serves.
        """
        organelle = Organelle(organelle)
        wanted = [] if modality is None else [str(modality)]
        for key in (*wanted, ANY_MODALITY):
            for entry in self.models:
                if organelle in entry.organelles and key in entry.modalities:
                    return entry
        raise RouteError(
            f"no model for ({organelle}, {_modality_label(modality)}) in {self._path}: no entry "
            f"lists '{organelle}' with modality "
            + (f"{modality!s} or '*'" if modality is not None else "'*'"))

    def routes(
        self, organelles: Iterable[Organelle | str], modality: Modality | str | None
    ) -> dict[ModelEntry, list[Organelle]]:
        """Group the requested organelles by the model that serves them (each model runs once).

        Order follows the first requested organelle of each model.
        """
        grouped: dict[ModelEntry, list[Organelle]] = {}
        for organelle in organelles:
            entry = self.route(organelle, modality)
            grouped.setdefault(entry, []).append(Organelle(organelle))
        return grouped

    def routing_table(
        self,
        organelles: Iterable[Organelle] = ORGANELLES,
        modalities: Iterable[Modality] = MODALITIES,
    ) -> list[Route]:
        """Every (organelle, modality) pair with the model serving it, or None if missing."""
        rows = []
        for organelle in organelles:
            for modality in modalities:
                try:
                    entry: ModelEntry | None = self.route(organelle, modality)
                except RouteError:
                    entry = None
                rows.append(Route(Organelle(organelle), Modality(modality), entry))
        return rows


def format_routing_table(rows: Sequence[Route]) -> str:
    """Render routing-table rows as aligned text (``MISSING`` where no model serves)."""
    lines = [("organelle", "modality", "model")]
    lines += [(str(r.organelle), str(r.modality), r.model.name if r.model else "MISSING")
              for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(error: ValidationError) -> str:
    """First validation problem as ``models.0.foo: Extra inputs are not permitted``."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"{location}: {first['msg']}"


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
        raise ManifestError(f"{path}: {_one_line(exc)}") from None
    for i, entry in enumerate(doc.models):
        _check_file(weights_dir, f"models.{i} ({entry.name})", entry.file, entry.sha256)
        if entry.fp16 is not None:
            _check_file(weights_dir, f"models.{i}.fp16 ({entry.name})", entry.fp16.file,
                        entry.fp16.sha256)
    return Manifest(weights_dir, doc.models)
