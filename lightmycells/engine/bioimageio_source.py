"""A bioimage.io model package (zip or folder) as a model source: its ``rdf.yaml`` → a manifest.

The container serves single-input 2D image-to-image models with ONNX weights. ``load`` reads
the package's description (format 0.5, PyYAML only: no ``bioimageio`` libraries in the
container), checks that the package is such a model, and turns it into one
:class:`~lightmycells.engine.manifest.ModelEntry`:

- tensors: one input ``(batch, channel=1, y, x)`` and one output ``(batch, channel=C, y, x)``
  the size of the input (anything else — a ``z`` axis, several inputs — is refused);
- weights: ``weights.onnx`` (its sha256 checked when the package states one); a zip's ONNX
  file is extracted to a temporary folder removed when the process exits;
- ``input_norm`` from the pre-processing: ``scale_range`` → percentile (0/100 → minmax),
  ``zero_mean_unit_variance`` → zscore, nothing → none; ``ensure_dtype`` float steps are
  no-ops here; post-processing must be empty (the container writes the model's output);
- ``pixel_size_um`` from the input's ``y``/``x`` scale and unit (none without a unit);
- organelles: the package's ``config.lightmycells.organelles``, else output channel names that
  are organelle names, else the command line's ``--organelles`` in channel order; modalities:
  ``config.lightmycells.modalities``, else ``--modality``, else ``"*"``;
- tiling: ``patch``/``overlap`` from ``config.lightmycells``, else the smallest valid size
  ≥ 256 and overlap 0.25, raised to cover twice the output's halo.

Every refusal is a :class:`PackageError` with one line naming the package and the problem.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from lightmycells.engine.manifest import (
    ANY_MODALITY,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ModelEntry,
    sha256_file,
)
from lightmycells.engine.tiling import TILE_MULTIPLE  # the container plans tiles in its multiples
from lightmycells.vocab import ORGANELLES, Modality, Organelle

#: Description file names bioimage.io accepts (also ``anything.<name>``), in its order.
YAML_NAMES = ("rdf.yaml", "bioimageio.yaml", "model.yaml")
#: Tile edge aimed at when the package does not say (the shipped models' patch).
DEFAULT_PATCH = 256
DEFAULT_OVERLAP = 0.25
#: Micrometres per unit of the format's space units the container meets in practice.
UNIT_UM = {"nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "meter": 1e6,
           "angstrom": 1e-4}
#: ``ensure_dtype`` targets that change nothing for a float32 pipeline.
FLOAT_DTYPES = ("float32", "float64")
#: Keys of ``config.lightmycells`` the import reads (the rest of the manifest entry comes
#: from the description itself).
CONFIG_KEYS = ("name", "organelles", "modalities", "patch", "overlap")


class PackageError(ManifestError):
    """A package the container cannot serve; the message names it and the reason."""


class PackageManifest(Manifest):
    """A manifest read from a package: messages name the package, not a manifest file."""

    def __init__(self, package: Path, weights_dir: Path, models: Sequence[ModelEntry]) -> None:
        self.package = package
        super().__init__(weights_dir, models)

    @property
    def _path(self) -> Path:
        return self.package


# --- reading the package ------------------------------------------------------------------

def _yaml_name(names: Sequence[str]) -> str | None:
    for wanted in YAML_NAMES:
        for name in sorted(names):
            if name == wanted or name.endswith("." + wanted):
                return name
    return None


def is_package(path: str | Path) -> bool:
    """Whether ``path`` is a bioimage.io package.

    That is a zip, a description file, or a folder holding a description and no
    ``manifest.json`` (a weights folder wins).
    """
    path = Path(path)
    if not path.exists():  # say "no such package" rather than "no manifest.json in it"
        return path.suffix == ".zip" or _yaml_name([path.name]) is not None
    if path.is_file():
        return zipfile.is_zipfile(path) or _yaml_name([path.name]) is not None
    if path.is_dir() and not (path / MANIFEST_NAME).exists():
        return _yaml_name([p.name for p in path.iterdir() if p.is_file()]) is not None
    return False


class _Package:
    """The files of a zip or folder package, by their name inside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and zipfile.is_zipfile(path):
            self.zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            names = [n for n in self.zip.namelist() if "/" not in n.rstrip("/")]
            self.folder = None
        else:
            self.zip = None
            self.folder = path if path.is_dir() else path.parent
            names = [path.name] if path.is_file() else [p.name for p in path.iterdir()]
        yaml_name = _yaml_name(names)
        if yaml_name is None:
            raise PackageError(f"{path}: not a bioimage.io package (no {' / '.join(YAML_NAMES)})")
        self.yaml_name = yaml_name

    def close(self) -> None:
        """Close the zip file, if any (extracted files stay until the process exits)."""
        if self.zip is not None:
            self.zip.close()

    def has(self, name: str) -> bool:
        if self.zip is not None:
            return name in self.zip.namelist()
        assert self.folder is not None
        return (self.folder / name).is_file()

    def read_text(self, name: str) -> str:
        if self.zip is not None:
            return self.zip.read(name).decode("utf-8")
        assert self.folder is not None
        return (self.folder / name).read_text(encoding="utf-8")

    def weights_dir(self, files: Sequence[str]) -> Path:
        """The folder ``files`` lie in: the package folder, or a temporary copy for a zip."""
        if self.zip is None:
            assert self.folder is not None
            return self.folder
        target = Path(tempfile.mkdtemp(prefix="lightmycells-bioimageio-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
        for name in files:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            with self.zip.open(name) as src, open(target / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return target


# --- the description → manifest entry fields ---------------------------------------------

def _fail(package: Path, problem: str) -> PackageError:
    return PackageError(f"{package}: {problem}")


def _axes_summary(axes: Sequence[dict[str, Any]]) -> str:
    return ", ".join(str(a.get("id", a.get("type"))) for a in axes)


def _check_axes(tensor: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    """The tensor's axes by id; raises ValueError unless they are (batch, channel, y, x)."""
    axes = tensor.get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, dict) for a in axes):
        raise ValueError(f"{role} '{tensor.get('id')}' has no axes list (format 0.4 packages "
                         f"list axes as a string; convert with `bioimageio update-format`)")
    ids = [str(a.get("id", a.get("type"))) for a in axes]
    types = [a.get("type") for a in axes]
    if "z" in ids:
        raise ValueError(f"is 3D ({role} axes {_axes_summary(axes)}); the container serves "
                         f"2D models with axes batch, channel, y, x")
    if ids != ["batch", "channel", "y", "x"] or types != ["batch", "channel", "space", "space"]:
        raise ValueError(f"{role} axes are ({_axes_summary(axes)}); the container serves "
                         f"2D models with axes (batch, channel, y, x)")
    return dict(zip(ids, axes, strict=True))


def _pixel_size_um(axes: dict[str, dict[str, Any]]) -> float | None:
    """Input ``y``/``x`` scale in µm, or None when the axes have no unit."""
    units = {axes[a].get("unit") for a in ("y", "x")}
    scales = {float(axes[a].get("scale", 1.0)) for a in ("y", "x")}
    if units == {None}:
        return None
    if len(units) > 1 or len(scales) > 1:
        raise ValueError(f"has anisotropic pixels (y, x units {sorted(map(str, units))}, "
                         f"scales {sorted(scales)}); the container resamples square pixels only")
    unit = units.pop()
    if unit not in UNIT_UM:
        raise ValueError(f"input pixel unit {unit!r} is not a length the container converts "
                         f"(expected one of {', '.join(UNIT_UM)})")
    return scales.pop() * UNIT_UM[unit]


def _sizes(axes: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(min, step) of the input's y and x (step 0: a fixed size)."""
    found = set()
    for axis_id in ("y", "x"):
        size = axes[axis_id].get("size")
        if isinstance(size, int) and size > 0:
            found.add((size, 0))
        elif isinstance(size, dict) and {"min", "step"} <= set(size):
            found.add((int(size["min"]), int(size["step"])))
        else:
            raise ValueError(f"input axis '{axis_id}' size {size!r} is neither a fixed size "
                             f"nor min/step")
    if len(found) > 1:
        raise ValueError(f"input y and x sizes differ ({sorted(found)}); the container tiles "
                         f"with square tiles")
    return found.pop()


def _halo(inp: dict[str, dict[str, Any]], out: dict[str, dict[str, Any]]) -> int:
    """The output's halo; raises unless the output is the input's size on its pixel grid."""
    halos = set()
    for axis_id in ("y", "x"):
        size, axis = out[axis_id].get("size"), out[axis_id]
        same_grid = (axis.get("unit") == inp[axis_id].get("unit")
                     and float(axis.get("scale", 1.0)) == float(inp[axis_id].get("scale", 1.0)))
        if not (isinstance(size, dict) and size.get("axis_id") == axis_id
                and int(size.get("offset", 0)) == 0 and same_grid):
            raise ValueError(f"output axis '{axis_id}' is not the input's '{axis_id}' "
                             f"(size {size!r}); the container serves same-size image-to-image "
                             f"models")
        halos.add(int(axis.get("halo", 0)))
    return max(halos)


def _drop_float_casts(steps: Any, role: str) -> list[dict[str, Any]]:
    if not isinstance(steps, list):
        raise ValueError(f"{role} is not a list")
    kept = []
    for step in steps:
        kwargs = step.get("kwargs") or {}
        if step.get("id") == "ensure_dtype" and kwargs.get("dtype") in FLOAT_DTYPES:
            continue
        kept.append(step)
    return kept


def _joint_over_image(kwargs: dict[str, Any], step_id: str) -> None:
    axes = kwargs.get("axes")
    if axes is not None and not {"y", "x"} <= set(axes):
        raise ValueError(f"pre-processing '{step_id}' normalises over axes {axes}; the "
                         f"container normalises each image over y and x jointly")
    if kwargs.get("reference_tensor") not in (None, "input"):
        raise ValueError(f"pre-processing '{step_id}' refers to tensor "
                         f"{kwargs['reference_tensor']!r}; the container has one input")
    if kwargs.get("mode") not in (None, "per_sample"):
        raise ValueError(f"pre-processing '{step_id}' mode {kwargs['mode']!r} is not "
                         f"per sample")


def _scale_range(kwargs: dict[str, Any]) -> dict[str, Any]:
    _joint_over_image(kwargs, "scale_range")
    low = float(kwargs.get("min_percentile", 0.0))
    high = float(kwargs.get("max_percentile", 100.0))
    if (low, high) == (0.0, 100.0):
        return {"kind": "minmax"}
    return {"kind": "percentile", "low": low, "high": high}


def _zero_mean_unit_variance(kwargs: dict[str, Any]) -> dict[str, Any]:
    _joint_over_image(kwargs, "zero_mean_unit_variance")
    return {"kind": "zscore"}


#: Pre-processing step id → the manifest ``input_norm`` it means (registry, one step only).
NORMALISATIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "scale_range": _scale_range,
    "zero_mean_unit_variance": _zero_mean_unit_variance,
}


def _input_norm(tensor: dict[str, Any]) -> dict[str, Any]:
    steps = _drop_float_casts(tensor.get("preprocessing", []), "preprocessing")
    if not steps:
        return {"kind": "none"}
    names = [str(s.get("id")) for s in steps]
    if len(steps) > 1 or names[0] not in NORMALISATIONS:
        raise ValueError(f"pre-processing ({', '.join(names)}) has no counterpart in the "
                         f"container (it serves one of {', '.join(NORMALISATIONS)}, and "
                         f"ensure_dtype to float)")
    return NORMALISATIONS[names[0]](steps[0].get("kwargs") or {})


def _check_postprocessing(tensor: dict[str, Any]) -> None:
    steps = _drop_float_casts(tensor.get("postprocessing", []), "postprocessing")
    if steps:
        names = ", ".join(str(s.get("id")) for s in steps)
        raise ValueError(f"post-processing ({names}) is not supported: the container writes "
                         f"the model's output as it is")


def _onnx_files(doc: dict[str, Any]) -> tuple[str, str | None, list[str]]:
    """(ONNX file, its stated sha256, every file to extract)."""
    weights = doc.get("weights") or {}
    onnx = weights.get("onnx")
    if not isinstance(onnx, dict):
        formats = ", ".join(k for k, v in weights.items() if v) or "none"
        raise ValueError(f"has {formats} weights; the container serves ONNX weights only "
                         f"(convert them, e.g. with bioimageio.core's weight converters)")
    source = str(onnx.get("source", ""))
    external = onnx.get("external_data")
    files = [source] + ([str(external["source"])] if isinstance(external, dict) else [])
    for name in files:
        path = PurePosixPath(name)
        if "://" in name or not name or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"weights file {name!r} is not a file inside the package "
                             f"(download the packaged zip)")
    return source, onnx.get("sha256"), files


def _organelles(
    config: dict[str, Any], channels: list[str], requested: Sequence[Organelle] | None
) -> list[str]:
    if "organelles" in config:
        return list(config["organelles"])
    by_name = {name: o for o in ORGANELLES for name in (o.value, o.title.lower())}
    named = [by_name.get(c.lower()) for c in channels]
    if all(named):
        return [str(o) for o in named]
    if requested is not None and len(requested) == len(channels):
        return [str(o) for o in requested]
    raise ValueError(f"has {len(channels)} output channel(s) ({', '.join(channels)}) and "
                     f"names no organelle; pass --organelles with {len(channels)} organelle(s) "
                     f"in channel order")


def _patch(config: dict[str, Any], minimum: int, step: int) -> int:
    if "patch" in config:
        return int(config["patch"])
    if step == 0:
        return minimum
    if TILE_MULTIPLE % step or minimum % step:
        raise ValueError(f"input sizes {minimum} + n·{step} do not include every multiple of "
                         f"{TILE_MULTIPLE} (the container's tile sizes)")
    return max(minimum, DEFAULT_PATCH)


def _name(doc: dict[str, Any], config: dict[str, Any]) -> str:
    if "name" in config:
        return str(config["name"])
    return "-".join(str(doc.get("name") or "bioimageio-model").lower().split())


def entry_fields(
    doc: dict[str, Any], *, organelles: Sequence[Organelle] | None = None,
    modality: Modality | None = None,
) -> dict[str, Any]:
    """Manifest entry fields (all but ``file`` and ``sha256``) for a model description.

    Raises
    ------
    ValueError
        With the reason (without the package's name) the container cannot serve it.
    """
    if doc.get("type") != "model":
        raise ValueError(f"is a {doc.get('type')!r} description, not a model")
    version = str(doc.get("format_version", ""))
    if not version.startswith("0.5."):
        raise ValueError(f"uses format_version {version or 'none'}; the container reads 0.5.x "
                         f"(convert with `bioimageio update-format`)")
    inputs, outputs = doc.get("inputs") or [], doc.get("outputs") or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"has {len(inputs)} input(s) and {len(outputs)} output(s); the "
                         f"container serves one input and one output")
    inp, out = _check_axes(inputs[0], "input"), _check_axes(outputs[0], "output")
    if len(inp["channel"].get("channel_names", [])) != 1:
        raise ValueError(f"takes {len(inp['channel'].get('channel_names', []))} input channels; "
                         f"the container feeds one transmitted-light channel")
    _check_postprocessing(outputs[0])
    raw_config = (doc.get("config") or {}).get("lightmycells") or {}
    config = {k: raw_config[k] for k in CONFIG_KEYS if k in raw_config}
    minimum, step = _sizes(inp)
    patch = _patch(config, minimum, step)
    halo = _halo(inp, out)
    overlap = float(config.get("overlap", DEFAULT_OVERLAP))
    if halo and overlap * patch < 2 * halo:
        overlap = math.ceil(2 * halo / patch * 1000) / 1000
    channels = [str(c) for c in out["channel"].get("channel_names", [])]
    modalities = config.get("modalities") or [str(modality) if modality else ANY_MODALITY]
    return {
        "name": _name(doc, config), "organelles": _organelles(config, channels, organelles),
        "modalities": list(modalities), "patch": patch, "overlap": overlap,
        "pixel_size_um": _pixel_size_um(inp), "input_norm": _input_norm(inputs[0]),
    }


def load(
    path: str | Path, *, organelles: Sequence[Organelle] | None = None,
    modality: Modality | None = None,
) -> Manifest:
    """Read a bioimage.io package into a one-model :class:`Manifest`.

    Parameters
    ----------
    path:
        A package zip, a package folder, or its ``rdf.yaml``.
    organelles:
        The command line's organelles, used as the output channels' names (in order) when
        neither the package's config nor its channel names say which organelles they are.
    modality:
        The modality the model serves when its config does not say (default ``"*"``).

    Raises
    ------
    PackageError
        One line naming the package and why the container cannot serve it.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such package (expected a bioimage.io zip, folder or rdf.yaml)")
    try:
        package = _Package(path)
        doc = yaml.safe_load(package.read_text(package.yaml_name))
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(path, f"unreadable package ({type(exc).__name__}: {exc})") from None
    try:
        return _manifest(path, package, doc, organelles, modality)
    finally:
        package.close()


def _manifest(
    path: Path, package: _Package, doc: Any, organelles: Sequence[Organelle] | None,
    modality: Modality | None,
) -> Manifest:
    if not isinstance(doc, dict):
        raise _fail(path, f"{package.yaml_name} is not a YAML mapping")
    try:
        fields = entry_fields(doc, organelles=organelles, modality=modality)
        onnx, stated_sha, files = _onnx_files(doc)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _fail(path, str(exc)) from None
    missing = [name for name in files if not package.has(name)]
    if missing:
        raise _fail(path, f"weights file {missing[0]!r} is missing from the package")
    weights_dir = package.weights_dir(files)
    sha = sha256_file(weights_dir / onnx)
    if stated_sha is not None and stated_sha != sha:
        raise _fail(path, f"{onnx} has sha256 {sha}, but {package.yaml_name} says {stated_sha}")
    try:
        entry = ModelEntry.model_validate({**fields, "file": onnx, "sha256": sha})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _fail(path, f"config.lightmycells.{where}: {first['msg']}") from None
    return PackageManifest(path, weights_dir, [entry])


def served_organelles(manifest: Manifest) -> tuple[Organelle, ...]:
    """The organelles a manifest's models predict, in the vocabulary's order."""
    served = {o for entry in manifest.models for o in entry.organelles}
    return tuple(o for o in ORGANELLES if o in served)
