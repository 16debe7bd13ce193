"""Seed 002's system: the UNETR, its masked-autoencoder pretraining, init_from, export."""

from __future__ import annotations

import csv
import math

import numpy as np
import onnx
import pytest
import torch

import inference
from lightmycells.io import ome
from lightmycells.train.config import (
    ConfigError,
    MaskKind,
    ModelConfig,
    PretrainConfig,
    UnetrConfig,
    parse_config,
)
from lightmycells.train.export import ExportError, export_checkpoint
from lightmycells.train.init import load_initial
from lightmycells.train.loop import BEST, LAST, train
from lightmycells.train.mae import (
    MaskedAutoencoder,
    grid_mask,
    masked_mse,
    patchify,
    random_mask,
    unpatchify,
)
from lightmycells.train.models import build_model
from lightmycells.train.models.unetr import sincos_position_embedding, skip_taps
from tests.test_train_helpers import make_studies

pytestmark = pytest.mark.torch
VIT = {"token": 8, "embed": 16, "layers": 2, "heads": 2, "dec_width": 4}
PRE = {"dec_embed": 8, "dec_layers": 1, "dec_heads": 2}


def _raw(root, out, **extra):
    """A tiny UNETR run on 32² patches (4 × 4 tokens of 8 px)."""
    return {"out": str(out), "steps": 4, "seed": 1, "device": "cpu", "threads": 1,
            "checkpoint_every": 2, "progress": False,
            "data": {"roots": [str(root)], "organelles": ["nucleus"], "patch": 32,
                     "batch_size": 2, "val_fraction": 0.2, "max_val_images": 2},
            "model": {"name": "unetr", "unetr": VIT},
            "optim": {"lr": 3e-3, "warmup_steps": 1}, "val": {"every": 2, "tile": 32},
            **extra}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return make_studies(tmp_path_factory.mktemp("lmc"), size=(48, 64))


@pytest.fixture(scope="module")
def pretrained(studies, tmp_path_factory):
    out = tmp_path_factory.mktemp("mae")
    train(parse_config(_raw(studies, out, pretrain=PRE)))
    return out


# --- the position embedding and the network ---------------------------------------------------

def test_sincos_embedding_of_a_non_square_grid_has_the_known_values():
    pos = sincos_position_embedding(2, 3, 8).numpy()  # ω = 10000^(-k/2) = 1, 0.01
    assert pos.shape == (6, 8)
    r, c = 1, 2  # token (1, 2) is row-major index 5
    expected = [math.sin(r), math.sin(0.01 * r), math.cos(r), math.cos(0.01 * r),
                math.sin(c), math.sin(0.01 * c), math.cos(c), math.cos(0.01 * c)]
    np.testing.assert_allclose(pos[5], expected, atol=1e-6)
    # first half depends on the row only, second half on the column only
    np.testing.assert_array_equal(pos[3, :4], pos[5, :4])
    np.testing.assert_array_equal(pos[2, 4:], pos[5, 4:])
    tall = sincos_position_embedding(3, 2, 8).numpy()
    np.testing.assert_allclose(tall[1], [0, 0, 1, 1, *expected[:4]], atol=1e-6)  # (0, 1)


def test_unetr_serves_any_multiple_of_the_token_and_taps_evenly():
    assert skip_taps(12, 4) == (3, 6, 9, 12) and skip_taps(4, 3) == (2, 3, 4)
    model = build_model(ModelConfig(name="unetr", unetr=UnetrConfig(**VIT)), 2).eval()
    for shape in ((16, 40), (32, 32)):
        assert model(torch.zeros(1, 1, *shape)).shape == (1, 2, *shape)


def test_config_checks_sizes_against_the_token(tmp_path):
    raw = _raw(tmp_path, tmp_path / "r")
    with pytest.raises(ConfigError, match=r"val.tile must be a multiple of model.unetr.token = 8"):
        parse_config(raw, overrides=["val.tile=36"])
    with pytest.raises(ConfigError, match="token must be a power of two"):
        parse_config(raw, overrides=["model.unetr.token=12"])
    with pytest.raises(ConfigError, match="pretrain .* set model.name: unetr"):
        parse_config({**raw, "pretrain": PRE, "model": {"name": "runet"}})
    with pytest.raises(ConfigError, match="grid mask hides exactly half"):
        parse_config({**raw, "pretrain": {**PRE, "ratio": 0.75}})
    assert parse_config(raw, overrides=["model.unetr.embed=32"]).model.unetr.embed == 32
    assert raw["model"]["unetr"]["embed"] == 16  # overrides leave the caller's mapping alone


# --- masking and the masked loss --------------------------------------------------------------

def test_grid_mask_is_a_checkerboard_of_exactly_half():
    mask = grid_mask(4, 6).reshape(4, 6)
    assert int(mask.sum()) == 12
    assert bool(mask[0, 0]) and not bool(mask[0, 1]) and bool(mask[1, 1])
    assert torch.equal(mask[:, 1:], ~mask[:, :-1]) and torch.equal(mask[1:], ~mask[:-1])
    rand = random_mask(3, 64, 0.75, torch.Generator().manual_seed(0))
    assert rand.sum(dim=1).tolist() == [48, 48, 48] and not torch.equal(rand[0], rand[1])


def test_patchify_round_trip_is_row_major():
    x = torch.arange(2 * 16 * 24, dtype=torch.float32).reshape(2, 1, 16, 24)
    tokens = patchify(x, 8)
    assert tokens.shape == (2, 6, 64)
    torch.testing.assert_close(tokens[0, 1], x[0, 0, :8, 8:16].reshape(-1))  # row 0, column 1
    torch.testing.assert_close(unpatchify(tokens, 2, 3, 8), x)


def test_masked_loss_ignores_unmasked_tokens():
    gen = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 16, 64, generator=gen), torch.randn(2, 16, 64, generator=gen)
    mask = grid_mask(4, 4)[None].expand(2, -1)
    loss = masked_mse(pred, target, mask)
    expected = ((pred - target) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(loss, expected)
    changed_pred, changed_target = pred.clone(), target.clone()
    changed_pred[~mask] += 5.0
    changed_target[~mask] -= 3.0
    torch.testing.assert_close(masked_mse(changed_pred, changed_target, mask), loss, rtol=0,
                               atol=0)
    changed_pred[mask] += 0.1
    assert float(masked_mse(changed_pred, target, mask)) != pytest.approx(float(loss))


@pytest.mark.parametrize("mask_kind", [MaskKind.GRID, MaskKind.RANDOM])
def test_encoder_never_sees_the_masked_pixels(mask_kind):
    torch.manual_seed(0)
    mae = MaskedAutoencoder(UnetrConfig(**VIT), PretrainConfig(mask=mask_kind, ratio=0.5, **PRE))
    mae.eval()
    x = torch.randn(2, 1, 32, 32)
    mask = mae.make_mask(2, 4, 4, torch.Generator().manual_seed(3))
    pred, target, _ = mae(x, mask)
    hidden = unpatchify(mask[..., None].float().expand(-1, -1, 64), 4, 4, 8).bool()
    pred2, target2, _ = mae(torch.where(hidden, x + 10.0, x), mask)
    torch.testing.assert_close(pred2, pred)  # only visible tokens reach the prediction
    assert not torch.allclose(target2, target)


# --- pretraining run, init_from, export ---------------------------------------------------------

def _log(out):
    with (out / "log.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_pretraining_run_logs_masked_loss_and_resumes_exactly(pretrained, studies, tmp_path):
    rows = _log(pretrained)
    assert [r["step"] for r in rows if r["masked_mse"]] == ["1", "2", "3", "4"]
    assert any(r["val_mean_mse"] for r in rows) and (pretrained / BEST).exists()
    raw = _raw(studies, tmp_path, pretrain={**PRE, "mask": "random", "ratio": 0.6})
    train(parse_config(raw), stop_at=2)
    train(parse_config(raw))
    resumed = {r["step"]: float(r["loss"]) for r in _log(tmp_path) if r["loss"]}
    straight = tmp_path / "straight"
    train(parse_config({**raw, "out": str(straight)}))
    expected = {r["step"]: float(r["loss"]) for r in _log(straight) if r["loss"]}
    assert resumed == pytest.approx(expected, abs=1e-6)


def test_init_from_loads_the_encoder_and_leaves_the_decoder(pretrained):
    pre = torch.load(pretrained / LAST, weights_only=False)["model"]
    torch.manual_seed(5)
    model = build_model(ModelConfig(name="unetr", unetr=UnetrConfig(**VIT)), 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines: list[str] = []
    loaded, skipped = load_initial(model, pretrained / LAST, log=lines.append)
    after = model.state_dict()
    encoder = [k for k in after if k.startswith("encoder.")]
    assert loaded == len(encoder) and skipped == len(pre) - len(encoder) > 0
    assert f"loaded {loaded} tensors, skipped {skipped} (mask_token" in lines[0]
    for name in after:
        source = pre[name] if name.startswith("encoder.") else before[name]
        torch.testing.assert_close(after[name], source, rtol=0, atol=0)
    assert not torch.equal(before["encoder.blocks.0.attn.qkv.weight"],
                           after["encoder.blocks.0.attn.qkv.weight"])


def test_fine_tune_exports_with_parity_and_serves_odd_sizes(pretrained, studies, tmp_path):
    with pytest.raises(ExportError, match="pretraining checkpoint"):
        export_checkpoint(pretrained / BEST, tmp_path / "w")
    run = tmp_path / "ft"
    train(parse_config(_raw(studies, run, init_from=str(pretrained / BEST))))
    report = export_checkpoint(run / BEST, tmp_path / "w", fp16=True)
    assert report.parity_random <= 1e-4 and report.parity_real <= 1e-4
    assert report.parity_fp16 is not None and report.parity_fp16 <= 0.05
    dims = onnx.load(str(report.onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    static = export_checkpoint(run / BEST, tmp_path / "s", static_tile=True)
    dims = onnx.load(str(static.onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [1, 32, 32] and static.parity_random <= 1e-4
    for weights in ("w", "s"):  # the container, on an image of an odd size
        (tmp_path / f"in_{weights}").mkdir()
        image = (1000 + 3000 * np.random.default_rng(0).random((45, 71))).astype(np.uint16)
        ome.write(tmp_path / f"in_{weights}" / "img_BF.ome.tiff", image, channel="BF",
                  pixel_size_um=(0.1, 0.1))
        out = tmp_path / f"out_{weights}"
        assert inference.main(["--input", str(tmp_path / f"in_{weights}"), "--output", str(out),
                               "--weights", str(tmp_path / weights), "--device", "cpu",
                               "--organelles", "nucleus"], {}) == 0
        (path,) = out.rglob("img_BF.tiff")
        prediction, _ = ome.read(path)
        assert prediction.shape == (45, 71) and np.isfinite(prediction).all()
