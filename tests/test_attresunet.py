"""The Attention ResUNet (seed 004): the three skip wirings, the gate-free control, ONNX export."""

import pytest
import torch
from torch import nn

from lightmycells.engine import manifest
from lightmycells.train.config import ConfigError, Gate, ModelConfig, parse_config
from lightmycells.train.export import export_checkpoint
from lightmycells.train.loop import BEST, train
from lightmycells.train.models import build_model
from lightmycells.train.models.attresunet import AttentionResUNet, DecoderLevel
from tests.test_train_helpers import make_studies, tiny_config

pytestmark = pytest.mark.torch


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("gate", list(Gate))
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_every_wiring_maps_b1hw_to_bchw(gate, norm):
    model = AttentionResUNet(out_channels=3, depth=2, width=4, blocks=2, norm=norm, gate=gate)
    out = model.eval()(torch.randn(2, 1, 32, 48))
    assert out.shape == (2, 3, 32, 48) and torch.isfinite(out).all()


def test_registry_builds_it_and_gate_is_refused_elsewhere():
    model = build_model(ModelConfig(name="attresunet", depth=2, width=4, gate="bughunters"), 1)
    assert isinstance(model, AttentionResUNet)
    assert model.dec[0].wiring == Gate.BUGHUNTERS
    assert build_model(ModelConfig(name="attresunet", depth=2, width=4), 1).dec[0].wiring == "oktay"
    raw = {"out": "x", "steps": 1, "data": {"roots": ["r"], "organelles": ["nucleus"]},
           "model": {"name": "runet", "gate": "oktay"}}
    with pytest.raises(ConfigError, match="model.gate applies to model 'attresunet' only"):
        parse_config(raw)
    raw["model"] = {"name": "attresunet", "gate": "oktai"}
    with pytest.raises(ConfigError, match="model.gate"):
        parse_config(raw)


# --- 'none' is a plain residual U-Net ---------------------------------------------------------
# Written here from torch primitives, independently of attresunet.py: pre-activation blocks
# (norm, LeakyReLU 0.1, conv3, norm, LeakyReLU, conv3, plus a 1×1 conv + norm shortcut when the
# shape changes), a conv3 stem, stride-2 blocks down, a bridge block, nearest 2× up-sampling
# and concatenation [up, skip] up, a norm-act-conv1×1 head.

class _Block(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.n1, self.c1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.n2, self.c2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.proj = None
        if c_in != c_out or stride != 1:
            self.proj = nn.Conv2d(c_in, c_out, 1, stride)
            self.pn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        act = nn.functional.leaky_relu
        y = self.c2(act(self.n2(self.c1(act(self.n1(x), 0.1))), 0.1))
        return y + (x if self.proj is None else self.pn(self.proj(x)))


class _PlainResUNet(nn.Module):
    def __init__(self, depth, width):
        super().__init__()
        w = [width * 2**i for i in range(depth + 1)]
        self.stem_conv, self.stem_block = nn.Conv2d(1, w[0], 3, 1, 1), _Block(w[0], w[0])
        self.down = nn.ModuleList(_Block(w[i], w[i + 1], 2) for i in range(depth))
        self.bridge = _Block(w[depth], w[depth])
        self.up = nn.ModuleList(_Block(w[i + 1] + w[i], w[i]) for i in range(depth))
        self.head_norm, self.head = nn.BatchNorm2d(w[0]), nn.Conv2d(w[0], 1, 1)

    def forward(self, x):
        x = self.stem_block(self.stem_conv(x))
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(x)
        x = self.bridge(x)
        for i in reversed(range(len(self.up))):
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = self.up[i](torch.cat([x, skips[i]], 1))
        return self.head(nn.functional.leaky_relu(self.head_norm(x), 0.1))


def _copy_in_order(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters and buffers by their order in each module, checking every shape."""
    src, dst = list(source.state_dict().values()), target.state_dict()
    assert len(src) == len(dst)
    for (key, value), new in zip(dst.items(), src, strict=True):
        assert value.shape == new.shape, key
        dst[key] = new.clone()
    target.load_state_dict(dst)


def test_gate_none_is_a_plain_residual_unet():
    torch.manual_seed(0)
    gated = AttentionResUNet(out_channels=1, depth=3, width=4, gate="none")
    # a few training-mode passes so the batch-norm statistics are not the identity
    for _ in range(3):
        gated(torch.randn(2, 1, 32, 32) * 3 + 1)
    plain = _PlainResUNet(depth=3, width=4)
    assert _count(gated) == _count(plain)
    _copy_in_order(gated, plain)
    x = torch.randn(2, 1, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(gated.eval()(x), plain.eval()(x), rtol=1e-5, atol=1e-5)


def test_gates_add_exactly_the_gate_parameters():
    depth, width = 3, 4
    none = _count(AttentionResUNet(depth=depth, width=width, gate="none"))
    gates = 0
    for level in range(depth):
        c_skip, c_up = width * 2**level, width * 2 ** (level + 1)
        inter = c_skip // 2
        # W_x (no bias) + norm, W_g (+ bias) + norm, ψ (+ bias)
        gates += c_skip * inter + 2 * inter + c_up * inter + inter + 2 * inter + inter + 1
    assert _count(AttentionResUNet(depth=depth, width=width, gate="oktay")) == none + gates


# --- where the gate acts ----------------------------------------------------------------------

def _decoder(gate: Gate, psi_bias: float) -> DecoderLevel:
    torch.manual_seed(1)
    level = DecoderLevel(c_up=8, c_skip=4, c_out=4, blocks=1, norm="none", gate=gate).eval()
    if level.gate is not None:  # a constant gate: α = σ(psi_bias) everywhere
        nn.init.zeros_(level.gate.psi.weight)
        nn.init.constant_(level.gate.psi.bias, psi_bias)
    return level


def _skip_matters(level: DecoderLevel) -> bool:
    x, skip = torch.randn(1, 8, 8, 8), torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        return not torch.allclose(level(x, skip), level(x, skip + torch.randn_like(skip)))


def test_bughunters_skip_reaches_the_decoder_only_through_the_gate():
    assert not _skip_matters(_decoder(Gate.BUGHUNTERS, 0.0))  # constant gate: skip is gone
    assert _skip_matters(_decoder(Gate.OKTAY, 0.0))  # α ⊙ skip is still concatenated
    assert _skip_matters(_decoder(Gate.NONE, 0.0))
    torch.manual_seed(2)
    trained_like = DecoderLevel(8, 4, 4, 1, "none", Gate.BUGHUNTERS).eval()
    assert _skip_matters(trained_like)  # a real gate: the skip acts through α


def test_oktay_gate_closed_removes_the_skip():
    assert not _skip_matters(_decoder(Gate.OKTAY, -200.0))  # α = 0: α ⊙ skip = 0
    assert _skip_matters(_decoder(Gate.OKTAY, 200.0))


# --- export ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return make_studies(tmp_path_factory.mktemp("lmc"))


@pytest.mark.parametrize("gate", list(Gate))
def test_onnx_export_parity(studies, tmp_path, gate):
    cfg = tiny_config(studies, tmp_path / "run", steps=2, checkpoint_every=2, val__every=2,
                      model={"name": "attresunet", "depth": 2, "width": 4, "gate": str(gate)})
    train(cfg)
    report = export_checkpoint(tmp_path / "run" / BEST, tmp_path / "w")
    assert report.parity_random <= 1e-4 and report.parity_real is not None
    assert report.parity_real <= 1e-4
    entry = manifest.load(tmp_path / "w").route("nucleus", "BF")
    assert entry.name == "nucleus-attresunet"
