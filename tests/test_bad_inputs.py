"""Bad inputs: one clear line naming the file and the problem, the rest still processed,
nothing half-written, exit 1; a broken configuration: exit 2 before any work."""

import json

import numpy as np
import pytest
import tifffile

import inference
import process
from lightmycells.io import ome
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Organelle
from tests import onnx_models


def run(args):
    return inference.main([str(a) for a in args], {})


@pytest.fixture
def explicit_weights(tmp_path):
    """An identity model routed for BF, PC and DIC only: no wildcard for unknown modalities."""
    folder = tmp_path / "explicit"
    entry = onnx_models.model_entry(folder, "explicit", onnx_models.identity_model(4),
                                    modalities=["BF", "PC", "DIC"])
    return onnx_models.write_manifest(folder, [entry])


def good_image(path, modality="BF", shape=(24, 40)):
    image = (np.random.default_rng(0).random(shape) * 1000).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    return ome.write(path, image, channel=modality, pixel_size_um=(0.1, 0.1))


def make_bad_inputs(folder):
    """Every kind of bad input of issue 2, item 4, and the message each must produce."""
    folder.mkdir(parents=True)
    big = good_image(folder / "source.tmp.tiff", shape=(200, 200))
    truncated = folder / "truncated_BF.tiff"
    data = tifffile.imread(big)
    tifffile.imwrite(truncated, data, photometric="minisblack")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    big.unlink()
    (folder / "text_BF.tiff").write_text("id,value\n1,2\n")
    (folder / "empty_BF.tiff").write_bytes(b"")
    tifffile.imwrite(folder / "rgb_BF.tiff", np.zeros((24, 24, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(folder / "two_channels.ome.tiff", np.zeros((2, 24, 24), np.uint16),
                     ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["BF", "PC"]}})
    tifffile.imwrite(folder / "complex_BF.tiff", np.zeros((24, 24), np.complex64))
    tifffile.imwrite(folder / "bool_BF.tiff", np.zeros((24, 24), bool))
    # tifffile logs a warning of its own for this one (a tag pointing past the end)
    cut = ome.write(folder / "cut_BF.ome.tiff", np.ones((300, 300), np.float32), channel="BF",
                    pixel_size_um=(0.1, 0.1), compression=None)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (folder / "gone_BF.tiff").symlink_to(folder / "deleted.tiff")
    (folder / "folder_BF.tiff").mkdir()
    nan = np.ones((24, 24), np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(folder / "nan_PC.tiff", nan)
    good_image(folder / "small.tiff", shape=(12, 40))
    tifffile.imwrite(folder / "mystery.tiff", np.ones((24, 24), np.uint16))  # no modality
    good_image(folder / "dup.tif")
    good_image(folder / "dup.ome.tiff", "PC")
    return {
        "truncated_BF.tiff": "not a readable TIFF",
        "text_BF.tiff": "not a readable TIFF",
        "empty_BF.tiff": "empty file",
        "rgb_BF.tiff": "3 samples per pixel (RGB?)",
        "two_channels.ome.tiff": "2 channels; expected a single transmitted-light channel",
        "complex_BF.tiff": "unsupported pixel type complex64",
        "bool_BF.tiff": "unsupported pixel type bool",
        "cut_BF.ome.tiff": "tifffile: <TiffTag.fromfile> raised TiffFileError",
        "gone_BF.tiff": f"dangling link (to {folder / 'deleted.tiff'}, which does not exist)",
        "folder_BF.tiff": "is a folder, not an image file",
        "nan_PC.tiff": "NaN or Inf",
        "small.tiff": "image is 12x40 px; at least 16 px per side are needed",
        "mystery.tiff": "unknown modality (no OME Channel Name/Fluor, no _BF_/_PC_/_DIC_ in the "
                        "file name) and the manifest has no '*' route for it; pass --modality",
        "dup.tif": "would write the same output dup.tiff as dup.ome.tiff",
        "dup.ome.tiff": "would write the same output dup.tiff as dup.tif",
    }


def test_each_bad_input_fails_alone_with_one_clear_line(tmp_path, explicit_weights, capsys):
    folder = tmp_path / "in" / "images" / INPUT_FOLDER
    expected = make_bad_inputs(folder)
    good_image(folder / "fine.tiff", "DIC")
    out = tmp_path / "out"
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", explicit_weights,
                "--device", "cpu"]) == 1
    err = capsys.readouterr().err.splitlines()
    failed = [line for line in err if " FAILED " in line]
    assert len(failed) == len(err) == len(expected)  # no second line for any file
    for name, message in expected.items():
        (line,) = [f for f in failed if f"FAILED {folder / name}: " in f]
        assert message in line, line
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted([f"images/{o.output_folder}/fine.tiff" for o in ORGANELLES]
                             + [".lightmycells/fine.tiff.json", "summary.json"])  # no partial or
    # temporary file left; the record of fine.tiff's outputs is what --resume trusts
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["written"], summary["failed"]) == (1, len(expected))
    assert {f["input"] for f in summary["failures"]} == {str(folder / n) for n in expected}


def test_stated_modality_rescues_plain_tiffs(tmp_path, explicit_weights):
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "mystery.tiff", np.ones((24, 24), np.uint16))
    out = tmp_path / "out"
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", explicit_weights,
                "--device", "cpu", "--modality", "PC"]) == 0
    assert len(list(out.rglob("mystery.tiff"))) == 4


def test_failed_write_removes_the_outputs_already_written(tmp_path):
    predictions = {o: np.ones((20, 20), np.float32) for o in ORGANELLES}
    outputs = {o: tmp_path / o.output_folder / "x.tiff" for o in ORGANELLES}
    (tmp_path / Organelle.TUBULIN.output_folder).write_text("a file where a folder must go")
    with pytest.raises(OSError):
        process.write_all(predictions, outputs, (0.1, 0.1))
    assert not any(path.exists() for path in outputs.values())
    assert not list(tmp_path.rglob(".*tmp"))


def test_non_finite_prediction_writes_nothing(tmp_path):
    predictions = {o: np.ones((20, 20), np.float32) for o in ORGANELLES}
    predictions[Organelle.ACTIN][0, 0] = np.inf
    outputs = {o: tmp_path / f"{o}.tiff" for o in ORGANELLES}
    with pytest.raises(ome.ImageError, match="actin prediction contains NaN or Inf"):
        process.write_all(predictions, outputs, None)
    assert not list(tmp_path.iterdir())


# --- configuration errors: exit 2, nothing written -------------------------------------------

def broken(weights, how):
    manifest = weights / "manifest.json"
    doc = json.loads(manifest.read_text())
    if how == "json":
        manifest.write_text(manifest.read_text()[:-10])
    elif how == "unknown key":
        doc["models"][0]["colour"] = "blue"
        manifest.write_text(json.dumps(doc))
    elif how == "sha256":
        (weights / doc["models"][0]["file"]).write_bytes(b"not the model")
    elif how == "missing file":
        (weights / doc["models"][0]["file"]).unlink()
    elif how == "no manifest":
        manifest.unlink()
    return weights


@pytest.mark.parametrize("how,message", [
    ("json", "unreadable manifest"), ("unknown key", "colour"), ("sha256", "sha256"),
    ("missing file", "does not exist"), ("no manifest", "no manifest"),
])
def test_broken_manifest_exits_2_before_any_work(tmp_path, identity_weights, capsys, how,
                                                 message):
    good_image(tmp_path / "in" / "a_BF.tiff")
    out = tmp_path / "out"
    code = run(["--input", tmp_path / "in", "--output", out,
                "--weights", broken(identity_weights, how), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {identity_weights}") and message in err and "\n" not in err
    assert not out.exists()


def test_unwritable_output_exits_2(tmp_path, identity_weights, capsys):
    good_image(tmp_path / "in" / "a_BF.tiff")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert run(["--input", tmp_path / "in", "--output", blocker / "out",
                "--weights", identity_weights, "--device", "cpu"]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert blocker.read_text() == "a file, not a folder"


def test_empty_input_folder_exits_2(tmp_path, identity_weights, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("no images here")
    assert run(["--input", tmp_path / "in", "--output", tmp_path / "out",
                "--weights", identity_weights]) == 2
    assert "no .tif/.tiff input images found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_stated_modality_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        run(["--modality", "SEM"])
    assert stop.value.code == 2
    assert "unknown modality 'SEM' (expected one of BF/Brightfield" in capsys.readouterr().err


def test_grand_challenge_mode_bad_input_fails_the_job_and_writes_nothing(
        tmp_path, identity_weights, monkeypatch, capsys):
    from lightmycells.run import cli

    monkeypatch.setattr(cli, "GC_INPUT", tmp_path / "input")
    monkeypatch.setattr(cli, "GC_OUTPUT", tmp_path / "output")
    folder = tmp_path / "input" / "images" / INPUT_FOLDER
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "0d6c-uuid.tiff", np.zeros((24, 24, 3), np.uint8),
                     photometric="rgb")
    (tmp_path / "output").mkdir()
    assert run(["--weights", identity_weights, "--device", "cpu"]) == 1
    assert "0d6c-uuid.tiff: 3 samples per pixel" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "output").rglob("*") if p.is_file()]
