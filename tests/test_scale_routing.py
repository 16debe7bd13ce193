"""Physical scale end to end: models per pixel-size range, and Z-stacks reduced as trained.

Every test runs ``inference.main`` in-process on real OME-TIFFs through real tiny ONNX models
(``tests/onnx_models.py``). The models are ``x + offset`` with ``input_norm: none``, one
offset per model, so an output tells which model served it.
"""

import json

import numpy as np
import pytest

import inference
from lightmycells.io import ome
from lightmycells.vocab import ORGANELLES, Organelle
from tests import onnx_models

ALL = list(onnx_models.ALL_ORGANELLES)
NONE = {"kind": "none"}


def _entry(folder, name, offset, organelles=ALL, **keys):
    """A model ``x + offset`` on every channel, with manifest ``keys`` added or replaced."""
    n = len(organelles)
    model = onnx_models.affine_model([1.0] * n, [float(offset)] * n)
    entry = onnx_models.model_entry(folder, name, model, organelles=organelles,
                                    input_norm=NONE, pixel_size_um=keys.pop("pixel_size_um",
                                                                             None))
    return {**entry, **keys}


@pytest.fixture
def per_range(tmp_path):
    """Three models per magnification (no range-less fallback), offsets 100, 200, 300."""
    folder = tmp_path / "weights"
    entries = [
        _entry(folder, "m100x", 100, pixel_size_um=0.065, pixel_size_um_range=[0.05, 0.09]),
        _entry(folder, "m60x", 200, pixel_size_um=0.1, pixel_size_um_range=[0.09, 0.2]),
        _entry(folder, "m20x", 300, pixel_size_um=0.3, pixel_size_um_range=[0.2, None]),
    ]
    return onnx_models.write_manifest(folder, entries)


def _smooth(shape, pixel_um):
    """A smooth pattern defined in µm (values ~1–5), sampled at the pixel centres."""
    y = (np.arange(shape[0]) + 0.5) * pixel_um[0]
    x = (np.arange(shape[1]) + 0.5) * pixel_um[1]
    return (3 + np.sin(y[:, None] / 1.7) * np.cos(x[None, :] / 2.3) + 0.05 * x[None, :]).astype(
        np.float32)


def _run(args):
    return inference.main([str(a) for a in args], {})


def _outputs(out, name):
    return {o: out / "images" / o.output_folder / name for o in ORGANELLES}


# (file, pixel size (y, x), model expected, its offset): the anisotropic (0.05, 0.2) µm pixel
# routes by its geometric mean 0.1 µm to m60x and is resampled per axis to 0.1 µm and back.
CASES = [("a_BF.ome.tiff", (0.065, 0.065), "m100x", 100),
         ("b_BF.ome.tiff", (0.05, 0.2), "m60x", 200),
         ("c_BF.ome.tiff", (0.4, 0.4), "m20x", 300)]


def test_per_range_models_route_by_pixel_size_end_to_end(tmp_path, per_range, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    images = {}
    for name, size, _, _ in CASES:
        images[name] = _smooth((96, 80), size)
        ome.write(inputs / name, images[name], channel="BF", pixel_size_um=size)
    ome.write(inputs / "d_BF.ome.tiff", _smooth((96, 80), (0.1, 0.1)), channel="BF",
              pixel_size_um=None)
    out = tmp_path / "out"
    assert _run(["--input", inputs, "--output", out, "--weights", per_range,
                 "--device", "cpu"]) == 1  # d states no pixel size and fails alone
    log = capsys.readouterr()
    for name, size, model, offset in CASES:
        stem = name.removesuffix(".ome.tiff")
        assert f"nucleus,mitochondria,tubulin,actin<-{model}" in log.out
        for organelle, path in _outputs(out, stem + ".tiff").items():
            prediction, meta = ome.read(path)
            assert prediction.shape == images[name].shape, (name, organelle)
            assert meta.pixel_size_um == pytest.approx(size)
            residual = prediction - images[name]
            # the route: the output is the input plus this model's offset (the others are
            # 100 apart); resampled inputs come back within 0.05 away from the border
            assert np.median(residual) == pytest.approx(offset, abs=0.01)
            assert np.abs(residual - offset)[6:-6, 6:-6].max() < 0.05
    unresampled = ome.read(_outputs(out, "a_BF.tiff")[Organelle.ACTIN])[0]
    np.testing.assert_allclose(unresampled, images["a_BF.ome.tiff"] + 100, atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    (failure,) = summary["failures"]
    assert failure["input"].endswith("d_BF.ome.tiff")
    assert failure["error"].startswith("no model for (nucleus, BF): the file states no pixel "
                                       "size")
    assert "'m100x' [0.05, 0.09) µm, 'm60x' [0.09, 0.2) µm, 'm20x' [0.2, ∞) µm" in \
        failure["error"]
    assert "d_BF.ome.tiff" in log.err and len(log.err.strip().splitlines()) == 1
    assert not any((out / "images").rglob("d_BF.tiff"))


def test_check_prints_a_row_per_range(per_range, capsys):
    assert _run(["--check", "--weights", per_range]) == 0  # ranges only: not missing
    text = capsys.readouterr().out
    lines = [line.split("  ") for line in text.splitlines()]
    rows = [[cell.strip() for cell in line if cell.strip()] for line in lines]
    assert rows[0] == ["organelle", "modality", "µm/pixel", "model"]
    assert rows[1:5] == [["nucleus", "BF", "[0.05, 0.09)", "m100x"],
                         ["nucleus", "BF", "[0.09, 0.2)", "m60x"],
                         ["nucleus", "BF", "[0.2, ∞)", "m20x"],
                         ["nucleus", "BF", "other", "-"]]
    assert len(rows) == 1 + 12 * 4 + 1  # header, 3 ranges + other per pair, the note
    assert rows[-1][0].startswith("note: 12 route(s) serve only pixel sizes in their ranges")


# --- Z-stacks reduced as each model was trained --------------------------------------------

@pytest.fixture
def zstack_weights(tmp_path):
    """nucleus from a model trained on projections (+10), the rest on single planes (+20)."""
    folder = tmp_path / "weights"
    return onnx_models.write_manifest(folder, [
        _entry(folder, "nuc-mip", 10, organelles=["nucleus"], zstack="mip"),
        _entry(folder, "rest-plane", 20, organelles=ALL[1:]),
    ])


@pytest.fixture
def stack_input(tmp_path):
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 24, 32)) * 1000).astype(np.float32)
    stack[1] = np.tile(np.float32([0, 3000]), (24, 16))  # plane 1: by far the sharpest
    stack[0, 0, :3] = 4000  # the projection differs from every plane
    inputs = tmp_path / "in"
    inputs.mkdir()
    ome.write(inputs / "s_BF.ome.tiff", stack, channel="BF", pixel_size_um=(0.1, 0.1))
    ome.write(inputs / "p_BF.ome.tiff", stack[0], channel="BF", pixel_size_um=(0.1, 0.1))
    return inputs, stack


@pytest.mark.parametrize("flag,nucleus_from,rest_from", [
    ([], "mip", "best"),  # each model as trained: projection for nucleus, best plane for the rest
    (["--zstack", "best"], "best", "best"),  # an explicit --zstack wins
    (["--zstack", "mip"], "mip", "mip"),
])
def test_zstack_reduction_follows_the_manifest_unless_given(
        tmp_path, zstack_weights, stack_input, flag, nucleus_from, rest_from):
    inputs, stack = stack_input
    reduced = {"mip": stack.max(axis=0), "best": stack[1]}
    out = tmp_path / "out"
    assert _run(["--input", inputs, "--output", out, "--weights", zstack_weights,
                 "--device", "cpu", *flag]) == 0
    outputs = _outputs(out, "s_BF.tiff")
    np.testing.assert_allclose(ome.read(outputs[Organelle.NUCLEUS])[0],
                               reduced[nucleus_from] + 10, atol=1e-3)
    for organelle in ORGANELLES[1:]:
        np.testing.assert_allclose(ome.read(outputs[organelle])[0], reduced[rest_from] + 20,
                                   atol=1e-3)
    plane = _outputs(out, "p_BF.tiff")  # a single plane stays itself for every model
    np.testing.assert_allclose(ome.read(plane[Organelle.NUCLEUS])[0], stack[0] + 10, atol=1e-3)
    np.testing.assert_allclose(ome.read(plane[Organelle.ACTIN])[0], stack[0] + 20, atol=1e-3)


def test_zstack_all_predicts_every_plane_with_any_manifest_key(
        tmp_path, zstack_weights, stack_input):
    inputs, stack = stack_input
    out = tmp_path / "out"
    assert _run(["--input", inputs, "--output", out, "--weights", zstack_weights,
                 "--device", "cpu", "--zstack", "all"]) == 0
    planes, meta = ome.read(_outputs(out, "s_BF.tiff")[Organelle.NUCLEUS])
    assert meta.axes == "ZYX"
    np.testing.assert_allclose(planes, stack + 10, atol=1e-3)


def test_models_that_serve_only_a_pixel_size_range_are_tested_before_the_first_image(
        per_range):
    import process
    from lightmycells.engine import manifest

    names = {e.name for e in process.routed_models(manifest.load(per_range), ORGANELLES)}
    assert names == {"m100x", "m60x", "m20x"}


def test_pixel_size_option_serves_files_that_state_none(tmp_path, per_range, capsys):
    """--pixel-size is used only where the file gives no pixel size, and routes like a stated
    one: 0.4 µm reaches the 20× model, while a file's own 0.065 µm still reaches the 100×."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    plain = _smooth((96, 80), (0.4, 0.4))
    ome.write(inputs / "plain_BF.ome.tiff", plain, channel="BF", pixel_size_um=None)
    ome.write(inputs / "own_BF.ome.tiff", _smooth((96, 80), (0.065, 0.065)), channel="BF",
              pixel_size_um=(0.065, 0.065))
    out = tmp_path / "out"
    assert _run(["--input", inputs, "--output", out, "--weights", per_range, "--device", "cpu",
                 "--pixel-size", "0.4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (plain_line,) = [line for line in lines if "plain_BF" in line]
    (own_line,) = [line for line in lines if "own_BF" in line]
    assert "0.4 µm (stated)" in plain_line and "<-m20x" in plain_line
    assert "(OME PhysicalSize)" in own_line and "<-m100x" in own_line
    prediction, meta = ome.read(_outputs(out, "plain_BF.tiff")[Organelle.NUCLEUS])
    assert meta.pixel_size_um == pytest.approx((0.4, 0.4))
    assert np.median(prediction - plain) == pytest.approx(300, abs=0.01)


@pytest.mark.parametrize("value", ["0", "-0.1", "abc", "0.1,0.2,0.3", "100"])
def test_pixel_size_option_refuses_what_is_not_a_pixel_size(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(["--input", tmp_path, "--output", tmp_path / "o", "--pixel-size", value])
    assert exit_info.value.code == 2
    assert "--pixel-size" in capsys.readouterr().err


def _run_unsized(tmp_path, weights):
    """Run ``weights`` on one BF file that states no pixel size (``x_BF``); the exit code."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    ome.write(inputs / "x_BF.ome.tiff", _smooth((64, 64), (0.1, 0.1)), channel="BF",
              pixel_size_um=None)
    return _run(["--input", inputs, "--output", tmp_path / "out", "--weights", weights,
                 "--device", "cpu"])


def test_a_file_without_pixel_size_says_the_scaled_model_ran_at_its_pixels(tmp_path, capsys):
    folder = tmp_path / "weights"
    weights = onnx_models.write_manifest(folder, [_entry(folder, "at01", 5, pixel_size_um=0.1)])
    assert _run_unsized(tmp_path, weights) == 0
    (line,) = [s for s in capsys.readouterr().out.splitlines() if "x_BF" in s]
    assert "[no pixel size: ran at the file's own pixels, not the models' 0.1 µm; " \
        "--pixel-size states one]" in line


def test_a_range_only_route_without_pixel_size_names_the_option(tmp_path, per_range, capsys):
    assert _run_unsized(tmp_path, per_range) == 1
    assert capsys.readouterr().err.strip().endswith("; pass --pixel-size UM")
