"""One input image → one fluorescence OME-TIFF per requested organelle.

The algorithm as the container runs it, composed from the package: read the OME-TIFF
(``lightmycells.io.ome``), check it, reduce a Z-stack (``lightmycells.engine.zstack``),
predict every organelle (``lightmycells.engine.predictor``: routing, normalisation, tiling,
ONNX Runtime) and write float32 OME-TIFFs with the input's pixel size. Either every output
of an image is written or none is: predictions are checked before the first write, and
outputs already written are removed if a later one fails or the run is stopped (SIGTERM).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lightmycells.engine import zstack
from lightmycells.engine.zstack import INFERENCE as ZSTACK_MODES
from lightmycells.io import ome
from lightmycells.vocab import Modality, Organelle

#: Smallest image side the models accept (a 4-level UNet halves 16 px down to 1).
MIN_SIDE = 16
#: Outputs are written uncompressed: float32 predictions shrink by only ~8 % with zlib, which
#: costs ~25x the write time (0.31 s vs 0.013 s per 2048² image, benchmarks/bench_write.py),
#: four times per input; every TIFF reader handles uncompressed files.
OUTPUT_COMPRESSION = None


@dataclass(frozen=True)
class Written:
    """A processed image: what the log line reports about it."""

    meta: ome.ImageMeta
    shape: tuple[int, ...]
    routes: dict[str, list[str]]
    seconds: float

    def describe(self) -> str:
        """``BF (Channel@Name)  512x512 0.1 µm (OME PhysicalSize)  nucleus<-unet`` log fields."""
        meta = self.meta
        modality = meta.modality.value if meta.modality else "unknown modality"
        size = "x".join(str(n) for n in self.shape)
        pixel = f"{meta.pixel_size_um[1]:.4g} µm " if meta.pixel_size_um else ""
        routes = "; ".join(f"{','.join(o)}<-{name}" for name, o in self.routes.items())
        notes = "".join(f"  [{note}]" for note in meta.notes)  # what the reader decided
        return (f"{modality} ({meta.modality_source})  {size} {pixel}({meta.pixel_size_source})"
                f"  {routes}{notes}")


@dataclass(frozen=True)
class Loaded:
    """An input read, checked and routed: what :meth:`Processor.compute` takes."""

    array: np.ndarray
    meta: ome.ImageMeta
    routes: dict[str, list[str]]
    seconds: float
    #: A 2D image's model inputs (normalised, resampled): ``Predictor.prepare``.
    prepared: dict[tuple, np.ndarray] | None = None


@dataclass(frozen=True)
class Computed:
    """An input's predictions, not yet written: what :meth:`Processor.write` takes."""

    loaded: Loaded
    predictions: dict[Organelle, np.ndarray]
    seconds: float


class Cancelled(Exception):
    """A write was called off (the run is stopping) before its next output; none is kept."""


@dataclass
class Processor:
    """Turns input files into organelle outputs with one shared predictor.

    Parameters
    ----------
    predictor:
        A ``lightmycells.engine.predictor.Predictor`` (models loaded once for the whole run).
    manifest:
        The manifest the predictor routes with; used to name the routes in the log and to
        refuse an image whose modality has no route before any work is done on it.
    organelles:
        Organelles to predict, in output order.
    modality:
        Modality to assume for files that do not state one (``--modality``).
    pixel_size_um:
        ``(y, x)`` µm to assume for files that do not state one (``--pixel-size``).
    zstack:
        ``"best"``, ``"mip"`` or ``"all"`` (see :data:`ZSTACK_MODES`), or None: reduce a
        Z-stack as each routed model was trained (the manifest's ``zstack``).
    """

    predictor: Any
    manifest: Any
    organelles: Sequence[Organelle]
    modality: Modality | None = None
    zstack: str | None = None
    pixel_size_um: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.zstack is not None and self.zstack not in ZSTACK_MODES:
            choices = ", ".join(ZSTACK_MODES)
            raise ValueError(f"zstack must be one of {choices} (got {self.zstack!r})")

    def __call__(self, source: Path, outputs: Mapping[Organelle, Path]) -> Written:
        """Predict ``source`` and write ``outputs[organelle]`` for each organelle.

        The three stages :meth:`load`, :meth:`compute` and :meth:`write` in a row; a batch
        run overlaps them across images (``lightmycells.run.pipeline``).

        Raises
        ------
        lightmycells.io.ome.ImageError
            For an input the models cannot use (the message is one line, without the path).
        lightmycells.engine.manifest.RouteError
            When the image's modality has no route for a requested organelle.
        """
        return self.write(self.compute(self.load(source)), outputs)

    def load(self, source: Path) -> Loaded:
        """Read and check ``source``, route it and make its models' inputs: all before the models.

        The inputs (normalised, resampled to each model's pixel size) are made for 2D images;
        a batch run does this for the next image while the current one computes.

        Raises
        ------
        lightmycells.io.ome.ImageError, lightmycells.engine.manifest.RouteError
            As :meth:`__call__`, before any model work.
        """
        started = time.perf_counter()
        array, meta = ome.read(source, modality=self.modality, pixel_size_um=self.pixel_size_um)
        check_shape(array.shape)
        routed = self._routes(meta)
        scaled = [e.pixel_size_um for e in routed if e.pixel_size_um is not None]
        if meta.pixel_size_um is None and scaled and self.predictor.resample:
            meta = replace(meta, notes=(*meta.notes, f"no pixel size: ran at the file's own "
                                        f"pixels, not the models' {min(scaled):g} µm; "
                                        "--pixel-size states one"))
        routes = {entry.name: [o.value for o in organelles] for entry, organelles in routed.items()}
        prepared = self.predictor.prepare(array, meta, routed) if array.ndim == 2 else None
        return Loaded(array, meta, routes, time.perf_counter() - started, prepared)

    def compute(self, loaded: Loaded) -> Computed:
        """Predict every organelle of a loaded image (the models' part; writes nothing)."""
        started = time.perf_counter()
        predictions = self._predict(loaded.array, loaded.meta, loaded.prepared)
        return Computed(loaded, predictions, time.perf_counter() - started)

    def write(self, computed: Computed, outputs: Mapping[Organelle, Path],
              cancel: threading.Event | None = None) -> Written:
        """Write a computed image's outputs, all or none (``cancel``: see :func:`write_all`)."""
        started = time.perf_counter()
        loaded = computed.loaded
        write_all(computed.predictions, outputs, loaded.meta.pixel_size_um, cancel=cancel)
        seconds = loaded.seconds + computed.seconds + time.perf_counter() - started
        return Written(loaded.meta, loaded.array.shape, loaded.routes, seconds)

    def _routes(self, meta: ome.ImageMeta) -> dict[Any, list[Organelle]]:
        from lightmycells.engine.manifest import PixelSizeRouteError, RouteError

        try:
            return self.manifest.routes(self.organelles, meta.modality, meta.pixel_size_um)
        except PixelSizeRouteError as exc:  # says the pixel size and the ranges already
            if meta.pixel_size_um is None:
                raise PixelSizeRouteError(f"{exc}; pass --pixel-size UM") from None
            raise
        except RouteError:
            if meta.modality is not None:
                raise
            choices = "|".join(Modality)
            why = ("no OME Channel Name/Fluor, no _BF_/_PC_/_DIC_ in the file name"
                   if meta.modality_source == "unknown" else meta.modality_source)
            raise RouteError(f"unknown modality ({why}) and the manifest has no '*' route for "
                             f"it; pass --modality {choices}") from None

    def _predict(self, array: np.ndarray, meta: ome.ImageMeta,
                 prepared: dict[tuple, np.ndarray] | None) -> dict[Organelle, np.ndarray]:
        if array.ndim == 2:
            return self.predictor.predict(array, meta, self.organelles, prepared)
        if self.zstack == "all":
            planes = [self.predictor.predict(plane, meta, self.organelles) for plane in array]
            return {o: np.stack([p[o] for p in planes]) for o in self.organelles}  # (Z, Y, X)
        out: dict[Organelle, np.ndarray] = {}
        for mode, organelles in self._reductions(meta).items():  # one reduction each
            out.update(self.predictor.predict(zstack.reduce(array, mode), meta, organelles))
        return {o: out[o] for o in self.organelles}

    def _reductions(self, meta: ome.ImageMeta) -> dict[str, list[Organelle]]:
        """Z-stack reduction → organelles: ``--zstack`` if given, else each model's own."""
        if self.zstack is not None:
            return {self.zstack: list(self.organelles)}
        groups: dict[str, list[Organelle]] = {}
        for entry, organelles in self._routes(meta).items():
            groups.setdefault(zstack.REDUCTION[entry.zstack], []).extend(organelles)
        return groups


def check_shape(shape: tuple[int, ...]) -> None:
    """Refuse images too small for the models.

    Raises
    ------
    lightmycells.io.ome.ImageError
        Naming the size and the minimum.
    """
    if min(shape[-2:]) < MIN_SIDE:
        size = "x".join(str(n) for n in shape[-2:])
        raise ome.ImageError(f"image is {size} px; at least {MIN_SIDE} px per side are needed")


def write_all(
    predictions: Mapping[Organelle, np.ndarray],
    outputs: Mapping[Organelle, Path],
    pixel_size_um: tuple[float, float] | None,
    *,
    cancel: threading.Event | None = None,
) -> None:
    """Write every prediction as float32 OME-TIFF, or none of them.

    ``cancel`` is looked at before each output: once set, the outputs written so far are
    removed and :class:`Cancelled` is raised. A write on a background thread cannot be
    interrupted by SIGTERM, which only the main thread sees; the stopping run sets it.

    Raises
    ------
    lightmycells.io.ome.ImageError
        When a prediction is not finite (a model fault; nothing is written).
    Cancelled
        When ``cancel`` was set before the last output was written.
    """
    for organelle, prediction in predictions.items():
        if not np.isfinite(prediction).all():
            raise ome.ImageError(f"the {organelle.value} prediction contains NaN or Inf")
    started: list[Path] = []
    try:
        for organelle, path in outputs.items():
            # listed before the write: an interruption (SIGTERM raises anywhere, even between
            # the rename and the return) must still roll this output back
            if cancel is not None and cancel.is_set():
                raise Cancelled("the run is stopping")
            started.append(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            prediction = np.asarray(predictions[organelle], dtype=np.float32)
            ome.write(path, prediction, channel=organelle.value, pixel_size_um=pixel_size_um,
                      compression=OUTPUT_COMPRESSION)
    except BaseException:  # also SIGTERM's Terminated and KeyboardInterrupt
        for path in started:
            with contextlib.suppress(OSError):  # e.g. a file where its folder must go
                path.unlink(missing_ok=True)
        raise


def build(
    manifest: Any,
    organelles: Sequence[Organelle],
    *,
    device: str = "auto",
    threads: int | None = None,
    tta: bool = False,
    batch_size: int | None = None,
    overlap: float | None = None,
    resample: bool = True,
    modality: Modality | None = None,
    zstack: str | None = None,
    images: int | None = None,
    pixel_size_um: tuple[float, float] | None = None,
) -> tuple[Processor, str]:
    """Pick the device, load and test every model the run may need, build a :class:`Processor`.

    Imports ONNX Runtime. Every model routed to for ``organelles`` on any modality (files
    state their own, so any route may be taken) is loaded and run once on a tile now, so
    that a broken model stops the run before the first image instead of failing each one.
    ``images`` (the run's count, None: unknown) picks cuDNN's search on CUDA; ``batch_size``
    None takes the tile batch from the free GPU memory after the warm-up on CUDA
    (:func:`auto_batch_size`), 4 on the CPU.

    Returns
    -------
    processor, device
        The processor (sessions already created) and the device actually used (``"cuda"``
        or ``"cpu"``).

    Raises
    ------
    lightmycells.engine.runtime.DeviceError
        When the requested device cannot be used (``cuda`` without a working CUDA, or a
        model's CUDA session falling back to the CPU).
    lightmycells.engine.runtime.ModelError
        When a model file does not load or run (one line naming it).
    """
    from lightmycells.engine.predictor import Predictor
    from lightmycells.engine.runtime import Runtime, select_device

    chosen = select_device(device)
    runtime = Runtime(chosen, threads=threads, images=images)
    entries = routed_models(manifest, organelles)
    for entry in entries:
        runtime.warm_up(entry, manifest.weights_dir)
    if batch_size is None:
        batch_size = auto_batch_size(chosen, entries)
    predictor = Predictor(manifest, runtime, tta=tta, batch_size=batch_size, overlap=overlap,
                          resample=resample)
    return Processor(predictor, manifest, organelles, modality=modality, zstack=zstack,
                     pixel_size_um=pixel_size_um), chosen


def auto_batch_size(device: str, entries: Sequence[Any]) -> int:
    """Tiles per model call (in patch² tiles) from the free GPU memory; the default on CPU."""
    from lightmycells.engine import runtime

    memory = runtime.gpu_memory() if device == "cuda" else None
    patch = max((entry.patch for entry in entries), default=256)
    return runtime.tile_batch_size(memory[0] if memory else None, patch,
                                   models=max(1, len(entries)))


def routed_models(manifest: Any, organelles: Sequence[Organelle]) -> list[Any]:
    """The manifest entries that can serve ``organelles``: every entry listing one of them.

    Each such entry serves some image — a modality, an unknown modality (``"*"``) or a pixel
    size in its range — so each is built and tested before the first image.
    """
    return [entry for entry in manifest.models if any(o in entry.organelles for o in organelles)]


def precision(runtime: Any) -> str:
    """``"fp16"`` when a model the run loaded runs its float16 variant, else ``"fp32"``.

    What really runs: a variant that failed the parity check on this GPU runs in fp32.
    """
    return "fp16" if any(m.file.name == m.entry.fp16.file for m in runtime.loaded
                         if m.entry.fp16 is not None) else "fp32"
