"""One 2D image → organelle predictions: routing, normalisation, resampling, TTA, tiling.

For each model the manifest routes the requested organelles to by the image's modality and
pixel size (a model serving several organelles runs once), the :class:`Predictor` normalises
the image with the model's ``input_norm``, resamples it to the model's pixel size when the
image's differs by more than 5 % on an axis, predicts it tile by tile (optionally averaged
over dihedral transforms) and resamples the prediction back onto the input's exact grid.
Models that share a normalisation and a pixel size share the prepared input: it is
normalised and resampled once per image, not once per model (the resampling is most of
the host's work per image once the models run on a GPU).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lightmycells.engine import resample, tiling
from lightmycells.engine.manifest import Manifest, ModelEntry
from lightmycells.engine.runtime import OnnxModel, Runtime
from lightmycells.engine.tta import DIHEDRAL, Transform, predict_tta
from lightmycells.io.ome import ImageError, ImageMeta
from lightmycells.vocab import ORGANELLES, Organelle

#: Tile strategies: ``auto`` plans the tile shape per image (fully convolutional models),
#: ``patch`` uses the manifest's patch edge everywhere.
TILE_MODES = ("auto", "patch")


class Predictor:
    """Runs the manifest's models on one image at a time.

    Parameters
    ----------
    manifest:
        The loaded manifest (routing and per-model settings).
    runtime:
        Creates and caches the ONNX Runtime sessions.
    tta:
        Average over the dihedral ``transforms`` (8× the compute by default).
    batch_size:
        Tiles per model call, counted in ``patch × patch`` tiles: a planned tile four times
        the patch area makes the batch four times smaller (at least one tile), so memory
        stays about the same.
    overlap:
        Minimum tile overlap as a fraction of the patch edge; None takes the manifest's.
    resample:
        Resample to the model's pixel size when the image's differs by more than 5 %
        (needs both pixel sizes; without the image's, the image is used as it is).
    tiles:
        ``"auto"`` (tile shape planned per image) or ``"patch"`` (fixed patch grid).
        Models with a fixed input size always use it.
    transforms:
        The TTA transforms (default all 8).
    """

    def __init__(
        self,
        manifest: Manifest,
        runtime: Runtime,
        *,
        tta: bool = False,
        batch_size: int = 4,
        overlap: float | None = None,
        resample: bool = True,
        tiles: str = "auto",
        transforms: Sequence[Transform] = DIHEDRAL,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1 (got {batch_size})")
        if overlap is not None and not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be a fraction in [0, 1) (got {overlap})")
        if tiles not in TILE_MODES:
            raise ValueError(f"tiles must be one of {', '.join(TILE_MODES)} (got {tiles!r})")
        self.manifest, self.runtime = manifest, runtime
        self.tta, self.batch_size, self.overlap = tta, batch_size, overlap
        self.resample, self.tiles, self.transforms = resample, tiles, tuple(transforms)

    def prepare(self, image: np.ndarray, meta: ImageMeta,
                entries: Iterable[ModelEntry]) -> dict[tuple, np.ndarray]:
        """The inputs of ``entries`` for one ``(Y, X)`` image, for :meth:`predict`'s ``prepared``.

        Each is the image normalised as its model wants and resampled to its pixel size, made
        once per (normalisation, pixel sizes). A batch run prepares the next image while the
        current one computes.

        Raises
        ------
        ImageError
            When the image's pixel size would resample it absurdly.
        """
        prepared: dict[tuple, np.ndarray] = {}
        for entry in entries:
            self._input(entry, image, self._pixel_sizes(entry, meta, image.shape), prepared)
        return prepared

    def predict(
        self, image: np.ndarray, meta: ImageMeta, organelles: Iterable[Organelle] = ORGANELLES,
        prepared: dict[tuple, np.ndarray] | None = None,
    ) -> dict[Organelle, np.ndarray]:
        """Predict the requested organelles for one ``(Y, X)`` image.

        ``prepared`` holds model inputs already made from this image (:meth:`prepare`);
        the ones missing are made here.

        Returns
        -------
        dict
            Organelle → ``(Y, X)`` float32, in the requested order.

        Raises
        ------
        RouteError
            When no model serves a requested organelle for ``meta.modality`` and
            ``meta.pixel_size_um``.
        ImageError
            When the image's pixel size would resample it absurdly (see
            ``resample.check_factors``).
        """
        if image.ndim != 2:
            raise ValueError(f"{meta.name}: expected a 2D (Y, X) image (got shape {image.shape}); "
                             f"reduce z-stacks first")
        wanted = [Organelle(o) for o in organelles]
        out: dict[Organelle, np.ndarray] = {}
        prepared = {} if prepared is None else prepared
        for entry, served in self.manifest.routes(wanted, meta.modality,
                                                         meta.pixel_size_um).items():
            pred = self.predict_model(entry, image, meta, prepared)  # (C, Y, X)
            for organelle in served:
                channel = pred[entry.channel(organelle)]
                out[organelle] = channel if len(served) == len(pred) else channel.copy()
        return {organelle: out[organelle] for organelle in wanted}

    def predict_model(self, entry: ModelEntry, image: np.ndarray, meta: ImageMeta,
                      prepared: dict[tuple, np.ndarray] | None = None) -> np.ndarray:
        """All output channels of one model for one image: ``(C, Y, X)`` float32.

        ``prepared`` keeps the model inputs already made from this image, keyed by
        normalisation and pixel sizes, so that models sharing both reuse one (read only).
        """
        model = self.runtime.model(entry, self.manifest.weights_dir)
        sizes = self._pixel_sizes(entry, meta, image.shape)
        x = self._input(entry, image, sizes, {} if prepared is None else prepared)

        def predict_image(plane: np.ndarray) -> np.ndarray:
            return self._tiled(model, plane)

        pred = predict_tta(x, predict_image, self.transforms) if self.tta else predict_image(x)
        if sizes is not None:
            image_um, model_um = sizes
            pred = resample.back_to_grid(pred, image.shape, model_um, image_um)
        return pred

    @staticmethod
    def _input(entry: ModelEntry, image: np.ndarray, sizes: tuple | None,
               prepared: dict[tuple, np.ndarray]) -> np.ndarray:
        """The image normalised as ``entry`` wants it, on its grid; made once per key.

        The normalised image at the input's own pixels (key ``(norm, None)``) is kept too, so
        that grids of one normalisation share its statistics.
        """
        norm = entry.input_norm.build()
        if (norm, None) not in prepared:
            native, _ = norm.before(image)
            native.setflags(write=False)  # shared between models: nothing may change it
            prepared[(norm, None)] = native
        if (norm, sizes) not in prepared:
            x = resample.to_pixel_size(prepared[(norm, None)], *sizes)
            x.setflags(write=False)
            prepared[(norm, sizes)] = x
        return prepared[(norm, sizes)]

    def _pixel_sizes(self, entry: ModelEntry, meta: ImageMeta,
                     shape: tuple[int, ...]) -> tuple | None:
        """(image µm, model µm) when resampling applies, else None.

        Raises
        ------
        ImageError
            When the resampling would be absurd (a wrong pixel size); checked before any
            work on the image.
        """
        if not self.resample or entry.pixel_size_um is None or meta.pixel_size_um is None:
            return None
        if not resample.needs_resampling(meta.pixel_size_um, entry.pixel_size_um):
            return None
        try:
            resample.check_factors((shape[0], shape[1]), meta.pixel_size_um,
                                   entry.pixel_size_um)
        except resample.ResampleError as exc:
            raise ImageError(f"{exc} (model {entry.name!r})") from None
        return meta.pixel_size_um, entry.pixel_size_um

    def _tiled(self, model: OnnxModel, plane: np.ndarray) -> np.ndarray:
        entry = model.entry
        overlap = entry.overlap if self.overlap is None else self.overlap
        overlap_px = tiling.overlap_pixels(entry.patch, overlap)
        if model.fixed_tile is not None:
            tile = model.fixed_tile
        elif self.tiles == "auto":
            tile = tiling.plan_tiles(plane.shape, patch=entry.patch, overlap=overlap).tile
        else:
            tile = (entry.patch, entry.patch)
        batch = max(1, self.batch_size * entry.patch**2 // (tile[0] * tile[1]))
        return tiling.predict_tiled(plane, model, tile=tile, overlap=overlap, batch_size=batch,
                                    overlap_px=overlap_px)
