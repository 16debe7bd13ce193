"""The bundled samples: what they cover, and test.sh's comparison run without Docker."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import inference
from lightmycells.engine import resample, tiling
from lightmycells.engine.manifest import MANIFEST_NAME, load, sha256_file
from lightmycells.eval import compare
from lightmycells.io import ome
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Modality, Organelle
from scripts.make_test_samples import MAX_BYTES, WEIGHTS_STAMP

REPO = Path(__file__).resolve().parents[1]
TEST = REPO / "test"
INPUTS = sorted((TEST / "input" / "images" / INPUT_FOLDER).glob("*.tif*"))
EXPECTED = TEST / "expected_output"
WEIGHTS = REPO / "weights"
REGENERATE = "python -m scripts.make_test_samples --expected-only"


def test_samples_cover_every_modality_odd_sizes_and_stay_small():
    metas = [ome.read(path) for path in INPUTS]
    assert {meta.modality for _, meta in metas} == set(Modality)
    assert all(meta.pixel_size_um is not None for _, meta in metas)
    assert any(n % 2 for image, _ in metas for n in image.shape), "no odd dimension"
    assert any(meta.modality_source.startswith("Channel@") and not ome._NAME_MODALITY.search(
        meta.name) for _, meta in metas), "no sample named like a Grand-Challenge upload"
    smallest = min(max(image.shape) for image, _ in metas)  # smaller in both directions
    if (WEIGHTS / MANIFEST_NAME).is_file():
        assert smallest < min(entry.patch for entry in load(WEIGHTS).models)
    total = sum(p.stat().st_size for p in TEST.rglob("*") if p.is_file())
    assert total < MAX_BYTES


def _model_grid(shape, meta, entry):
    """The image's shape as ``entry`` sees it: resampled to its pixel size when it has one."""
    if entry.pixel_size_um is None or not resample.needs_resampling(meta.pixel_size_um,
                                                                    entry.pixel_size_um):
        return shape
    return resample.model_shape(shape, meta.pixel_size_um, entry.pixel_size_um)


def _tiled_samples():
    """(path, plans) of the samples every shipped model predicts in two tiles or more."""
    entries = load(WEIGHTS).models
    out = []
    for path in INPUTS:
        image, meta = ome.read(path)
        plans = [tiling.plan_tiles(_model_grid(image.shape, meta, e), patch=e.patch,
                                   overlap=e.overlap) for e in entries]
        if all(plan.tiles >= 2 for plan in plans):
            out.append((path, plans))
    return out


WEIGHTS_MISSING = pytest.mark.skipif(
    not (WEIGHTS / MANIFEST_NAME).is_file(),
    reason="weights/manifest.json does not exist yet (trained weights not shipped)")


@WEIGHTS_MISSING
def test_a_sample_is_blended_from_several_tiles_of_every_shipped_model():
    assert _tiled_samples(), "no sample needs two tiles; the tile seams go untested"


def _whole_image(session, x, width):
    """One ONNX Runtime pass over all of ``x``, reflect-padded at the bottom to a multiple of
    16 (the depth-4 UNet's stride) and at the right to ``width`` (as the tiler pads an image
    narrower than its tile), and cropped back."""
    padded = tiling._reflect_pad(x, (x.shape[0] + -x.shape[0] % 16, max(width, x.shape[1])))
    out = session.run(None, {session.get_inputs()[0].name: padded[None, None]})[0][0]
    return out[:, : x.shape[0], : x.shape[1]]


@WEIGHTS_MISSING
def test_tiled_expected_outputs_agree_with_whole_image_runs_of_the_shipped_models():
    """The bundled outputs against each model run once over the whole image, on the model's
    own grid (normalised, resampled to its pixel size and back, as the engine does; the
    resampling is checked on its own in tests/test_resample.py).

    Where the first tile alone covers the image, it and the whole run see the same pixels in
    the same pooling phase: they agree to 1e-3 of the range. Later tiles start where the
    planner spreads them (634 and 1268 rows on the 0.1 µm grid), off the UNet's stride of
    16, so a strided UNet sees them in another phase: elsewhere the outputs only correlate
    (measured ≥ 0.9949, 99th percentile of |diff| ≤ 0.057 of the range).
    """
    import onnxruntime as ort

    (path, _), *_ = _tiled_samples()
    image, meta = ome.read(path)
    low, high = np.percentile(image.astype(np.float64), [2.0, 99.8])
    x = ((image - low) / (high - low)).astype(np.float32)  # the manifest's norm
    for entry in load(WEIGHTS).models:
        assert entry.input_norm.model_dump() == {"kind": "percentile", "low": 2.0, "high": 99.8}
        grid = _model_grid(image.shape, meta, entry)
        xm = x if grid == image.shape else resample.to_pixel_size(x, meta.pixel_size_um,
                                                                  entry.pixel_size_um)
        plan = tiling.plan_tiles(grid, patch=entry.patch, overlap=entry.overlap)
        session = ort.InferenceSession(WEIGHTS / entry.file, providers=["CPUExecutionProvider"])
        whole = _whole_image(session, xm, plan.tile[1])
        if grid != image.shape:
            whole = resample.back_to_grid(whole, image.shape, entry.pixel_size_um,
                                          meta.pixel_size_um)
        second = tiling.tile_starts(grid[0], plan.tile[0], plan.overlap_px)[1]
        alone = int(second * image.shape[0] / grid[0]) - 2  # rows of the first tile alone
        for channel, name in enumerate(entry.organelles):
            tiled, _ = ome.read(EXPECTED / "images" / Organelle(name).output_folder / path.name)
            ref = whole[channel]
            low, high = np.percentile(ref, [2.0, 99.8])
            diff = np.abs(tiled - ref) / (high - low)
            assert diff[:alone].max() <= 1e-3, name
            assert np.percentile(diff, 99) <= 0.1, name
            assert np.corrcoef(tiled.ravel(), ref.ravel())[0, 1] >= 0.99, name


@WEIGHTS_MISSING
def test_samples_match_expected_output(tmp_path):
    assert (EXPECTED / "images").is_dir(), f"no test/expected_output; run {REGENERATE}"
    stamp = (EXPECTED / WEIGHTS_STAMP).read_text().strip()
    assert stamp == sha256_file(WEIGHTS / MANIFEST_NAME), (
        f"test/expected_output was made with other weights; run {REGENERATE}")
    assert inference.main(["--input", str(TEST / "input"), "--output", str(tmp_path),
                           "--device", "cpu"], {}) == 0
    assert compare.compare_folders(tmp_path, EXPECTED) == []
    assert len(compare.output_files(EXPECTED)) == len(ORGANELLES) * len(INPUTS)


# --- the comparison itself -------------------------------------------------------------------

@pytest.fixture
def expected(tmp_path):
    root = tmp_path / "expected"
    rng = np.random.default_rng(0)
    for organelle in ORGANELLES[:2]:
        folder = root / "images" / organelle.output_folder
        folder.mkdir(parents=True)
        ome.write(folder / "a.tiff", rng.random((30, 40), dtype=np.float32), channel=organelle,
                  pixel_size_um=(0.1, 0.1))
    return root


def _copy(expected, tmp_path):
    return shutil.copytree(expected, tmp_path / "actual")


def test_compare_accepts_float_noise(expected, tmp_path):
    actual = _copy(expected, tmp_path)
    path = actual / "images" / ORGANELLES[0].output_folder / "a.tiff"
    image, _ = ome.read(path)
    noise = np.random.default_rng(1).normal(0, 1e-3, image.shape).astype(np.float32)
    ome.write(path, image + noise, channel="nucleus", pixel_size_um=(0.1, 0.1))
    assert compare.compare_folders(actual, expected) == []
    assert compare.main([str(actual), str(expected)]) == 0


@pytest.mark.parametrize("change,message", [
    ("shuffle", "differs: Pearson r"),
    ("pixel size", "pixel size"),
    ("shape", "shape (30, 39)"),
    ("missing", "missing"),
])
def test_compare_reports_real_differences(expected, tmp_path, change, message):
    actual = _copy(expected, tmp_path)
    path = actual / "images" / ORGANELLES[1].output_folder / "a.tiff"
    image, _ = ome.read(path)
    if change == "missing":
        path.unlink()
    else:
        if change == "shuffle":
            image = np.random.default_rng(2).permutation(image.ravel()).reshape(image.shape)
        size = (0.2, 0.1) if change == "pixel size" else (0.1, 0.1)
        image = image[:, :39] if change == "shape" else image
        ome.write(path, np.ascontiguousarray(image), channel="x", pixel_size_um=size)
    (problem,) = compare.compare_folders(actual, expected)
    assert problem.startswith(f"images/{ORGANELLES[1].output_folder}/a.tiff: ")
    assert message in problem
    assert compare.main([str(actual), str(expected)]) == 1


def test_compare_reports_unexpected_outputs(expected, tmp_path):
    actual = _copy(expected, tmp_path)
    shutil.copy(actual / "images" / ORGANELLES[0].output_folder / "a.tiff",
                actual / "images" / ORGANELLES[0].output_folder / "b.tiff")
    assert compare.compare_folders(actual, expected) == [
        f"images/{ORGANELLES[0].output_folder}/b.tiff: not expected"]


def test_sample_inputs_import_into_grand_challenge(tmp_path):
    from panimg import convert
    from panimg.image_builders import image_builder_tiff

    result = convert(input_directory=INPUTS[0].parent, output_directory=tmp_path,
                     builders=[image_builder_tiff], post_processors=[])
    assert sorted(result.consumed_files) == [p.resolve() for p in INPUTS]


def test_regenerating_keeps_unchanged_sample_files_byte_for_byte(tmp_path):
    from scripts.make_test_samples import sync

    made, dest = tmp_path / "made", tmp_path / "dest"
    image = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    for root in (made, dest):  # two writes of one image: tifffile stamps different UUIDs
        root.mkdir()
        for name in ("same", "changed", "stale"):
            ome.write(root / f"{name}.tiff", image, channel="BF", pixel_size_um=(0.1, 0.1))
    assert (made / "same.tiff").read_bytes() != (dest / "same.tiff").read_bytes()
    (made / "stale.tiff").unlink()
    ome.write(made / "changed.tiff", image + 1, channel="BF", pixel_size_um=(0.1, 0.1))
    ome.write(made / "new.tiff", image, channel="BF", pixel_size_um=(0.1, 0.1))
    before = (dest / "same.tiff").read_bytes()
    assert sync(made, dest) == [dest / "changed.tiff", dest / "new.tiff"]
    assert (dest / "same.tiff").read_bytes() == before
    assert sorted(p.name for p in dest.iterdir()) == ["changed.tiff", "new.tiff", "same.tiff"]
    np.testing.assert_array_equal(ome.read(dest / "changed.tiff")[0], image + 1)
