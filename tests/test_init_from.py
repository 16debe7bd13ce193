"""init_from: a run starts from a checkpoint or from an exported ONNX model (the shipped ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lightmycells.train.config import ModelConfig, load_config
from lightmycells.train.init import InitError, load_initial
from lightmycells.train.models import build_model

pytestmark = pytest.mark.torch
WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
# The shipped models' architectures, from the training configs shipped beside them.
SHIPPED = {o: load_config(WEIGHTS / f"{o}.train.yaml").model
           for o in ("nucleus", "mitochondria", "tubulin", "actin")}


@pytest.mark.parametrize("organelle", sorted(SHIPPED))
def test_init_from_a_shipped_onnx_reproduces_its_output_before_any_step(organelle):
    model = build_model(SHIPPED[organelle], 1)
    lines: list[str] = []
    loaded, skipped = load_initial(model, WEIGHTS / f"{organelle}.onnx", log=lines.append)
    assert skipped == 0 and loaded > 0 and "loaded" in lines[0]
    x = np.random.default_rng(3).normal(size=(2, 1, 96, 128)).astype(np.float32)
    session = ort.InferenceSession(str(WEIGHTS / f"{organelle}.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4 * float(np.abs(expected).max()))


def test_a_fresh_model_does_not_match_so_the_parity_means_something():
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 1, 64, 64)).astype(np.float32))
    fresh, loaded = (build_model(SHIPPED["nucleus"], 1).eval() for _ in range(2))
    load_initial(loaded, WEIGHTS / "nucleus.onnx", log=lambda _: None)
    with torch.no_grad():
        assert float((fresh(x) - loaded(x)).abs().max()) > 1e-2


def test_onnx_of_another_architecture_is_refused_in_one_line():
    model = build_model(SHIPPED["mitochondria"], 1)  # depth 3: nucleus.onnx is depth 4
    with pytest.raises(InitError, match="nucleus.onnx.*(another architecture|does not match)"):
        load_initial(model, WEIGHTS / "nucleus.onnx", log=lambda _: None)


def test_checkpoint_loads_matching_tensors_and_names_the_rest(tmp_path):
    source = build_model(ModelConfig(name="runet", depth=2, width=8), 2)
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()},
                "step": 5}, tmp_path / "last.pt")
    target = build_model(ModelConfig(name="runet", depth=2, width=8), 3)  # other head width
    lines: list[str] = []
    loaded, skipped = load_initial(target, tmp_path / "last.pt", log=lines.append)
    assert skipped == 2 and "head.weight" in lines[0] and "head.bias" in lines[0]
    assert loaded == len(source.state_dict()) - 2
    torch.testing.assert_close(target.stem[0].body[0].weight, source.stem[0].body[0].weight)


def test_prefix_rule_and_bad_sources(tmp_path):
    source = build_model(ModelConfig(name="runet", depth=2, width=8), 1)
    torch.save({"model": {f"encoder.{k}": v for k, v in source.state_dict().items()}},
               tmp_path / "pre.pt")
    target = build_model(ModelConfig(name="runet", depth=2, width=8), 1)
    with pytest.raises(InitError, match="no tensor fits"):
        load_initial(target, tmp_path / "pre.pt", log=lambda _: None)
    loaded, skipped = load_initial(target, tmp_path / "pre.pt", prefix="encoder.->",
                                   log=lambda _: None)
    assert skipped == 0 and loaded == len(source.state_dict())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InitError, match="junk.pt: not a readable checkpoint"):
        load_initial(target, tmp_path / "junk.pt")
    with pytest.raises(InitError, match="no such file"):
        load_initial(target, tmp_path / "missing.onnx")
