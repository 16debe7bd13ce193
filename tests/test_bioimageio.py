"""bioimage.io packages: export → bioimageio.core's test → served by ``inference.py --weights``.

The round trip uses a shipped model (``weights/nucleus.onnx``) and the bundled sample; the
known answers are the weights folder's own manifest entry and the pixels the container writes
through its native manifest route. Refused packages are real packages with one thing changed.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

import inference
from lightmycells.engine import bioimageio_source, manifest
from lightmycells.engine.manifest import ModelEntry, sha256_file
from lightmycells.train import bioimageio
from lightmycells.train.bioimageio import ModelCard, Sizes
from lightmycells.vocab import INPUT_FOLDER, Modality, Organelle
from tests import onnx_models

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
SAMPLES = REPO / "test" / "input"
MODEL = "nucleus-runet"
CARD = ModelCard(name="lightmycells nucleus test", description="A test package.",
                 authors=("Test Author",), training_data="Simulated images only.",
                 limitations="Trained on simulated images only.")
FIELDS = ("name", "organelles", "modalities", "patch", "overlap", "pixel_size_um", "input_norm")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The shipped nucleus model as a bioimage.io package (zip)."""
    out = tmp_path_factory.mktemp("package") / "nucleus.zip"
    return bioimageio.export_package(WEIGHTS, MODEL, out, CARD)


def unpacked(package: Path, folder: Path) -> Path:
    """The package as a folder, to edit."""
    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    return folder


def read_rdf(folder: Path) -> dict:
    return yaml.safe_load((folder / "rdf.yaml").read_text(encoding="utf-8"))


def write_rdf(folder: Path, doc: dict) -> Path:
    (folder / "rdf.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return folder


def run(*args) -> int:
    return inference.main([str(a) for a in (*args, "--device", "cpu")], {})


def outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): tifffile.imread(p)
            for p in sorted(folder.glob("images/*/*.tiff"))}


def shipped_entry() -> ModelEntry:
    return next(m for m in manifest.load(WEIGHTS).models if m.name == MODEL)


# --- export and validation ----------------------------------------------------------------

def test_shipped_model_package_passes_bioimageio_core_test(package):
    summary = bioimageio.validate(package)
    checks = {d.name: d.status for d in summary.details}
    assert bioimageio.passed(summary), bioimageio.summary_line(package, summary)
    assert checks["Reproduce test outputs from test inputs (onnx)"] == "passed"
    assert sum("Run onnx inference" in name for name in checks) == 6  # 3 sizes × 2 batches
    names = set(zipfile.ZipFile(package).namelist())
    assert {"rdf.yaml", "weights.onnx", "README.md", "cover.png", "test_input.npy",
            "test_output.npy"} <= names


def test_validator_fails_a_package_whose_test_output_is_off(package, tmp_path):
    folder = unpacked(package, tmp_path / "pkg")
    expected = np.load(folder / "test_output.npy")
    np.save(folder / "test_output.npy", expected * 1.01 + 0.01)
    doc = read_rdf(folder)
    doc["outputs"][0]["test_tensor"]["sha256"] = sha256_file(folder / "test_output.npy")
    summary = bioimageio.validate(write_rdf(folder, doc) / "rdf.yaml")
    checks = {d.name: d.status for d in summary.details}
    assert not bioimageio.passed(summary)
    assert "failed (9 checks passed, 1 failed)" in bioimageio.summary_line(folder, summary)
    assert checks["Reproduce test outputs from test inputs (onnx)"] == "failed"


def test_package_states_the_model_card(package):
    doc = yaml.safe_load(zipfile.ZipFile(package).read("rdf.yaml"))
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert doc["format_version"].startswith("0.5.")
    assert doc["weights"]["onnx"]["opset_version"] == 17
    assert doc["inputs"][0]["preprocessing"][-2:][0]["id"] == "scale_range"
    assert {"min_percentile": 2.0, "max_percentile": 99.8}.items() <= (
        doc["inputs"][0]["preprocessing"][1]["kwargs"].items())
    assert [c["doi"] for c in doc["cite"]][0] == "10.48550/arXiv.2406.01187"
    assert doc["outputs"][0]["axes"][1]["channel_names"] == ["nucleus"]
    assert "simulated images only" in readme and "## Validation" in readme
    assert doc["inputs"][0]["axes"][2]["size"] == {"min": 16, "step": 16}  # depth-4 RUNet


# --- import and serving -------------------------------------------------------------------

def test_package_reads_back_into_the_shipped_manifest_entry(package):
    loaded = bioimageio_source.load(package)
    (entry,) = loaded.models
    original = shipped_entry()
    assert entry.model_dump(include=set(FIELDS)) == original.model_dump(include=set(FIELDS))
    assert entry.sha256 == original.sha256  # the very ONNX file


def test_package_serves_the_same_pixels_as_the_manifest_route(package, tmp_path):
    assert run("--input", SAMPLES, "--output", tmp_path / "pkg", "--weights", package) == 0
    assert run("--input", SAMPLES, "--output", tmp_path / "native", "--weights", WEIGHTS,
               "--organelles", "nucleus") == 0
    got, expected = outputs(tmp_path / "pkg"), outputs(tmp_path / "native")
    samples = list((SAMPLES / "images" / INPUT_FOLDER).glob("*.tif*"))
    assert sorted(got) == sorted(expected) and len(got) == len(samples)  # nucleus only
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)


def test_bioimageio_core_predicts_what_the_container_writes(package, tmp_path):
    from bioimageio.core import create_prediction_pipeline, load_description, predict

    name = "sample1_BF_z0.tiff"  # 256²: a valid size, one tile for the container
    # bioimage.io consumers take the image as given (the package states the pixel size in its
    # axes but no consumer resamples), so the container runs without resampling here
    assert run("--input", SAMPLES, "--output", tmp_path, "--weights", package,
               "--no-resample") == 0
    ours = tifffile.imread(tmp_path / "images" / "nucleus-fluorescence-ome-tiff" / name)
    image = tifffile.imread(SAMPLES / "images" / INPUT_FOLDER / name)
    pipeline = create_prediction_pipeline(load_description(package), weight_format="onnx",
                                          devices=[bioimageio.CPU_PROVIDER])
    theirs = predict(model=pipeline, inputs={"input": image[None, None].astype(np.float32)})
    np.testing.assert_allclose(theirs.members["output"].data.to_numpy()[0, 0], ours,
                               rtol=0, atol=1e-5)


def test_zoo_package_without_config_takes_organelle_and_modality_from_the_command_line(
        package, tmp_path, capsys):
    folder = unpacked(package, tmp_path / "zoo")
    doc = read_rdf(folder)
    del doc["config"]["lightmycells"]
    doc["outputs"][0]["axes"][1]["channel_names"] = ["fluorescence"]
    write_rdf(folder, doc)
    assert run("--weights", folder, "--check") == 2  # no organelle named anywhere
    assert "pass --organelles with 1 organelle(s)" in capsys.readouterr().err
    assert run("--weights", folder, "--organelles", "nucleus", "--modality", "BF", "--check") == 2
    table = capsys.readouterr().out
    assert "nucleus       BF        " in table
    assert "nucleus       PC        any       MISSING" in table
    one = tmp_path / "in" / "images" / INPUT_FOLDER
    one.mkdir(parents=True)
    shutil.copy(SAMPLES / "images" / INPUT_FOLDER / "sample1_BF_z0.tiff", one)
    assert run("--input", tmp_path / "in", "--output", tmp_path / "zoo_out", "--weights", folder,
               "--organelles", "nucleus", "--modality", "BF") == 0
    assert run("--input", tmp_path / "in", "--output", tmp_path / "native", "--weights", WEIGHTS,
               "--organelles", "nucleus") == 0
    got, expected = outputs(tmp_path / "zoo_out"), outputs(tmp_path / "native")
    assert list(got) == list(expected)
    np.testing.assert_array_equal(*got.values(), *expected.values())


def _z_axis(doc):
    doc["inputs"][0]["axes"].insert(2, {"type": "space", "id": "z", "size": 8})


def _torchscript(doc):
    doc["weights"] = {"torchscript": {"source": "weights.pt", "pytorch_version": "2.0"}}


def _two_inputs(doc):
    doc["inputs"].append({**doc["inputs"][0], "id": "mask"})


def _sigmoid(doc):
    doc["outputs"][0]["postprocessing"] = [{"id": "sigmoid"}]


def _old_format(doc):
    doc["format_version"] = "0.4.10"


def _three_channels(doc):
    doc["inputs"][0]["axes"][1]["channel_names"] = ["r", "g", "b"]


def _clip(doc):
    doc["inputs"][0]["preprocessing"] = [{"id": "clip", "kwargs": {"min": 0, "max": 1}}]


def _upsampling(doc):
    doc["outputs"][0]["axes"][2]["size"]["offset"] = 16


def _wrong_sha(doc):
    doc["weights"]["onnx"]["sha256"] = "0" * 64


@pytest.mark.parametrize(("change", "message"), [
    (_z_axis, "is 3D (input axes batch, channel, z, y, x); the container serves 2D models"),
    (_torchscript, "has torchscript weights; the container serves ONNX weights only"),
    (_two_inputs, "has 2 input(s) and 1 output(s); the container serves one input"),
    (_sigmoid, "post-processing (sigmoid) is not supported"),
    (_old_format, "uses format_version 0.4.10; the container reads 0.5.x"),
    (_three_channels, "takes 3 input channels"),
    (_clip, "pre-processing (clip) has no counterpart in the container"),
    (_upsampling, "output axis 'y' is not the input's 'y'"),
    (_wrong_sha, "weights.onnx has sha256 "),  # the file's own and the stated one: below
])
def test_refused_package_exits_2_with_one_line(package, tmp_path, capsys, change, message):
    folder = unpacked(package, tmp_path / "pkg")
    doc = read_rdf(folder)
    change(doc)
    write_rdf(folder, doc)
    out = tmp_path / "out"
    assert run("--input", SAMPLES, "--output", out, "--weights", folder) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder}: "), err
    assert message in err[0]
    if change is _wrong_sha:
        real = sha256_file(folder / "weights.onnx")
        assert f"{real[:8]}" in err[0] and "rdf.yaml says 000000" in err[0]
    assert not out.exists()


def test_missing_package_is_named(tmp_path, capsys):
    assert run("--weights", tmp_path / "model.zip", "--check") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'model.zip'}: no such package (expected a bioimage.io zip, "
        f"folder or rdf.yaml)")


def test_zip_without_description_is_not_a_package(tmp_path, capsys):
    bad = tmp_path / "model.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("weights.onnx", b"not a model")
    assert run("--weights", bad, "--check") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {bad}: not a bioimage.io package (no rdf.yaml / bioimageio.yaml / model.yaml)")


# --- the description ↔ manifest entry mapping, without packages ----------------------------

@pytest.mark.parametrize("fields", [
    {"pixel_size_um": 0.1, "input_norm": {"kind": "zscore"}, "modalities": ["BF", "PC"]},
    {"pixel_size_um": None, "input_norm": {"kind": "minmax"}, "overlap": 0.5},
    {"pixel_size_um": 0.065, "input_norm": {"kind": "none"}, "organelles": ["actin", "tubulin"]},
    {"input_norm": {"kind": "percentile", "low": 1.0, "high": 99.0}, "patch": 512},
])
def test_description_maps_back_to_the_entry(fields):
    base = {"name": "m", "file": "m.onnx", "sha256": "0" * 64, "organelles": ["nucleus"],
            "modalities": ["*"], "patch": 256, "overlap": 0.25, "pixel_size_um": None,
            "input_norm": {"kind": "percentile", "low": 2.0, "high": 99.8}}
    entry = ModelEntry.model_validate({**base, **fields})
    doc = bioimageio.description(entry, CARD, 17, Sizes(16, 16, 0))
    got = bioimageio_source.entry_fields(doc)
    assert got == entry.model_dump(mode="json", include=set(FIELDS))


def _zoo_doc(**changes):
    """A minimal description as another tool would write it (no lightmycells config)."""
    entry = shipped_entry()
    doc = bioimageio.description(entry, CARD, 17, Sizes(16, 16, 0))
    del doc["config"]
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return doc


def test_zoo_description_defaults():
    got = bioimageio_source.entry_fields(_zoo_doc(name="Some Zoo Model"))
    # the pixel size is no default: the shipped model's, read back from the axes' scale
    assert got == {"name": "some-zoo-model", "organelles": ["nucleus"], "modalities": ["*"],
                   "patch": 256, "overlap": 0.25,
                   "pixel_size_um": pytest.approx(shipped_entry().pixel_size_um),
                   "input_norm": {"kind": "percentile", "low": 2.0, "high": 99.8}}


def test_zoo_description_pixel_size_halo_and_command_line():
    space = {"type": "space", "unit": "nanometer", "scale": 100.0}
    doc = _zoo_doc(**{"inputs.0.axes.2": {**space, "id": "y", "size": {"min": 64, "step": 32}},
                      "inputs.0.axes.3": {**space, "id": "x", "size": {"min": 64, "step": 32}},
                      "outputs.0.axes.1.channel_names": ["signal"]})
    for axis in doc["outputs"][0]["axes"][2:]:
        axis.update(unit="nanometer", scale=100.0, halo=48)
    got = bioimageio_source.entry_fields(doc, organelles=(Organelle.TUBULIN,),
                                         modality=Modality.DIC)
    assert got["pixel_size_um"] == pytest.approx(0.1)
    assert got["organelles"] == ["tubulin"] and got["modalities"] == ["DIC"]
    assert got["overlap"] * got["patch"] >= 2 * 48  # tiles overlap by at least both halos


@pytest.mark.parametrize(("changes", "message"), [
    ({"inputs.0.axes.2.size": {"min": 24, "step": 24}, "inputs.0.axes.3.size":
      {"min": 24, "step": 24}}, "do not include every multiple of 64"),
    ({"inputs.0.preprocessing": [{"id": "scale_range", "kwargs": {"axes": ["x"]}}]},
     "normalises over axes ['x']"),
    ({"type": "dataset"}, "is a 'dataset' description, not a model"),
])
def test_zoo_description_refusals(changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        bioimageio_source.entry_fields(_zoo_doc(**changes))


def test_probe_finds_the_unet_step(tmp_path):
    path = tmp_path / "unet.onnx"
    import onnx

    onnx.save(onnx_models.unet_model(2, depth=3), path)
    assert bioimageio.probe_sizes(bioimageio._session(path), 2) == (8, 8)
    onnx.save(onnx_models.conv_model(1), path)
    assert bioimageio.probe_sizes(bioimageio._session(path), 1) == (1, 1)


def test_command_line_writes_a_tiny_package_that_loads(unet_weights, tmp_path, capsys):
    out = tmp_path / "tiny.zip"
    args = ["--weights", str(unet_weights), "--model", "unet", "--out", str(out), "--author",
            "Test Author", "--training-data", "none", "--limitations", "random weights",
            "--no-validate"]
    assert bioimageio.main(args) == 0
    (entry,) = bioimageio_source.load(out).models
    assert entry.organelles == tuple(Organelle(o) for o in onnx_models.ALL_ORGANELLES)
    assert bioimageio.main([*args[:3], "nope", *args[4:]]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
