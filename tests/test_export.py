import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lightmycells.engine import manifest
from lightmycells.train.export import (
    ExportError,
    export_checkpoint,
    load_checkpoint,
    main,
    max_difference,
)
from lightmycells.train.loop import BEST, train
from lightmycells.vocab import MODALITIES, ORGANELLES
from tests.test_train_helpers import make_studies, tiny_config

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = make_studies(tmp_path_factory.mktemp("lmc"))
    out = tmp_path_factory.mktemp("run")
    train(tiny_config(root, out, steps=3, data__organelles=["nucleus", "mitochondria"]))
    return out / BEST


def test_export_matches_pytorch_and_writes_a_valid_manifest(checkpoint, tmp_path):
    report = export_checkpoint(checkpoint, tmp_path)
    assert report.parity_random <= 1e-4 and report.parity_real is not None
    assert report.parity_real <= 1e-4
    onnx.checker.check_model(onnx.load(str(report.onnx_path)))
    loaded = manifest.load(tmp_path)  # schema, file and sha256 checks of the real loader
    entry = loaded.route("mitochondria", "DIC")
    assert entry.name == "nucleus-mitochondria-runet"
    assert entry.organelles == ("nucleus", "mitochondria") and entry.modalities == ("*",)
    assert (entry.patch, entry.overlap, entry.pixel_size_um) == (32, 0.25, 0.1)


def test_onnx_accepts_any_batch_and_multiple_of_the_depth(checkpoint, tmp_path):
    report = export_checkpoint(checkpoint, tmp_path, write_manifest=False)
    session = ort.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 32, 32), (3, 1, 20, 44), (2, 1, 64, 128)]:
        out = session.run(None, {"input": np.zeros(shape, np.float32)})[0]
        assert out.shape == (shape[0], 2, *shape[2:])
    assert not (tmp_path / "manifest.json").exists()


def test_parity_measure_sees_a_different_model(checkpoint, tmp_path):
    report = export_checkpoint(checkpoint, tmp_path, write_manifest=False)
    other = load_checkpoint(checkpoint).model
    for p in other.parameters():
        p.data += 0.05
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32), dtype=np.float32)
    assert max_difference(other, report.onnx_path, [x]) > 1e-3


def test_reexport_replaces_the_entry_and_bad_patch_is_refused(checkpoint, tmp_path):
    export_checkpoint(checkpoint, tmp_path, name="m")
    export_checkpoint(checkpoint, tmp_path, name="m", patch=64)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert [(m["name"], m["patch"]) for m in doc["models"]] == [("m", 64)]
    with pytest.raises(ExportError, match="not a multiple of 2\\*\\*model.depth = 4"):
        export_checkpoint(checkpoint, tmp_path, patch=30)


def test_cli_exports_and_reports_parity(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "max |torch - onnx| random" in text and "nucleus-mitochondria-runet" in text
    routes = manifest.load(tmp_path).routing_table(ORGANELLES[:2], MODALITIES)
    assert all(r.model is not None for r in routes)


def test_fp16_variant_is_checked_and_listed(checkpoint, tmp_path):
    report = export_checkpoint(checkpoint, tmp_path, fp16=True)
    assert report.parity_fp16 is not None and 0 < report.parity_fp16 <= 0.05
    entry = manifest.load(tmp_path).route("nucleus", "BF")
    assert entry.fp16 is not None and entry.fp16.file == "nucleus-mitochondria.fp16.onnx"
    session = ort.InferenceSession(str(tmp_path / entry.fp16.file),
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"  # float32 I/O, float16 inside


def test_module_shim_runs_the_export_cli():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lightmycells.export", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--checkpoint" in done.stdout
