"""Seed 003's system: resgen generator, PatchGANs, adaptive loss, per-modality strategies."""

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tifffile
import torch
import yaml

import inference
from lightmycells.engine import manifest
from lightmycells.train import losses
from lightmycells.train.__main__ import main as train_main
from lightmycells.train.adversarial import Adversary
from lightmycells.train.config import ConfigError, GanConfig, LossConfig, load_config, parse_config
from lightmycells.train.export import export_checkpoint, load_checkpoint
from lightmycells.train.export import main as export_main
from lightmycells.train.loop import BEST, train
from lightmycells.train.modality import code
from lightmycells.train.models.patchgan import PatchGAN, receptive_field
from lightmycells.train.models.resgen import ResGenerator
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Modality, Organelle
from tests.test_train_helpers import torchrun, with_overrides

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]
ZOO = sorted((REPO / "configs" / "zoo").glob("seed003_*.yaml"))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Three tiny simulated studies, BF, PC, DIC in turn (no actin label on DIC)."""
    root = tmp_path_factory.mktemp("sim")
    subprocess.run([sys.executable, "-m", "lightmycells.simulate", "--out", str(root),
                    "--studies", "3", "--fovs", "2", "--seed", "3", "--size", "64",
                    "--all-labels", "--quiet"], check=True, cwd=REPO)
    return root


def tiny(root, out, **overrides):
    """A seed-003 config: resgen (width 4), 4 organelles, GAN from step 1, 32² patches."""
    raw = {
        "out": str(out), "steps": 4, "seed": 2, "device": "cpu", "threads": 1,
        "checkpoint_every": 2, "progress": False,
        "data": {"roots": [str(root)], "organelles": [str(o) for o in ORGANELLES],
                 "patch": 32, "batch_size": 3, "val_fraction": 0.2, "max_val_images": 1},
        "model": {"name": "resgen", "depth": 2, "width": 4, "blocks": 1},
        "loss": {"mse": 0, "ssim": 0, "pearson": 0, "cosine": 0, "l1_weighted": 1.0},
        "optim": {"lr": 3e-3, "warmup_steps": 0, "betas": [0.5, 0.999]},
        "gan": {"weight": 0.05, "width": 4, "start_step": 1},
        "val": {"every": 100, "tile": 32, "batch_size": 2},
    }
    return with_overrides(raw, **overrides)


def _log(out):
    with (out / "log.csv").open() as handle:
        return {int(r["step"]): r for r in csv.DictReader(handle) if r["loss"]}


# --- config and architecture ----------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("model.decoder=shared", r"model\.decoder: Extra inputs"),
    ("gan.wieght=1", r"gan\.wieght: Extra inputs"),
    ("model.decoders=both", r"model\.decoders: Input should be 'shared' or 'per_organelle'"),
    ("gan.mode=hinge", r"gan\.mode: Input should be 'vanilla' or 'lsgan'"),
])
def test_config_typos_fail_with_the_dotted_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ZOO[0], overrides=[override])


def test_resgen_keys_are_refused_for_other_models():
    with pytest.raises(ConfigError, match="model.condition applies to model 'resgen' only"):
        parse_config({"out": "x", "steps": 1, "data": {"roots": ["r"], "organelles": ["actin"]},
                      "model": {"name": "runet", "condition": "modality"}})


def test_generator_layouts_shapes_and_condition():
    torch.manual_seed(0)
    per = ResGenerator(4, width=4, downs=2, blocks=2).eval()
    shared = ResGenerator(4, width=4, downs=2, blocks=2, per_organelle=False).eval()
    assert len(per.decoders) == 4 and len(shared.decoders) == 1
    x = torch.randn(2, 1, 24, 40)
    assert per(x).shape == shared(x).shape == (2, 4, 24, 40)
    # each decoder drives its own channel only
    per.decoders[2][-1].bias.data += 1.0
    assert torch.equal(per(x)[:, [0, 1, 3]], per(x)[:, [0, 1, 3]])
    dyn = ResGenerator(3, width=4, downs=2, blocks=1, codes=3).eval()
    with pytest.raises(ValueError, match="takes a condition code"):
        dyn(x)
    with pytest.raises(ValueError, match="takes no condition code"):
        per(x, code("BF")[None])
    # FiLM starts as the identity: every code gives the same output, until it learns
    outs = [dyn(x, code(m)[None]) for m in Modality]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    for film in dyn.films:
        torch.nn.init.normal_(film.gamma.weight)
    assert not torch.allclose(dyn(x, code("BF")[None]), dyn(x, code("DIC")[None]))
    # a per-sample code equals the broadcast code
    batch = torch.stack([code("PC"), code("PC")])
    assert torch.allclose(dyn(x, batch), dyn(x, code("PC")[None]), atol=1e-6)


def test_batch_norm_generator_is_tile_independent_in_eval():
    torch.manual_seed(0)
    gen = ResGenerator(1, width=4, downs=2, blocks=1)
    gen(torch.randn(4, 1, 32, 32))  # move the running statistics off their defaults
    gen.eval()
    x = torch.randn(1, 1, 128, 64)
    alone = gen(x)[..., 64:, :]
    other = x.clone()
    other[..., :8, :] = 100.0  # far from the bottom half (outside its receptive field)
    assert torch.allclose(gen(other)[..., 64:, :], alone, atol=1e-6)
    # instance norm (the seed's) would let those rows change the whole image
    inorm = ResGenerator(1, width=4, downs=2, blocks=1)
    for module in list(inorm.modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, torch.nn.BatchNorm2d):
                setattr(module, child, torch.nn.InstanceNorm2d(sub.num_features))
    inorm.eval()
    assert not torch.allclose(inorm(other)[..., 64:, :], inorm(x)[..., 64:, :], atol=1e-3)


def test_patchgan_receptive_field_is_70():
    assert receptive_field(3) == 70
    disc = PatchGAN(2, width=4, layers=3, norm="none")
    x = torch.zeros(1, 2, 128, 128, requires_grad=True)
    out = disc(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)))
    cols = torch.nonzero(x.grad.abs().sum((0, 1, 2)))
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


# --- the adaptive loss ------------------------------------------------------------------------

def test_weighted_l1_against_a_hand_computation():
    target = torch.tensor([[[[0.5, 1.5], [-0.2, 1.0]]]])
    pred = torch.zeros_like(target)
    # |diff| = 0.5, 1.5, 0.2, 1.0; weights 1, 0.1 (above p99.8), 0.1 (below p2), 1
    expected = (0.5 + 0.15 + 0.02 + 1.0) / 4
    assert losses.l1_weighted(pred, target).item() == pytest.approx(expected)
    # the seed's public code: the L1 reduced first, then times mean(M) — a different number
    assert (0.8 * 0.55) != pytest.approx(expected)
    total, parts = losses.CombinedLoss(LossConfig(mse=0, ssim=0, pearson=0, cosine=0,
                                                  l1_weighted=1.0))(
        torch.cat([pred, pred]), torch.cat([target, target + 9]), torch.tensor([[1.0], [0.0]]))
    assert total.item() == pytest.approx(expected)  # the masked sample counts for nothing


def test_weighted_l1_weights_each_pixel():
    pred = torch.zeros(1, 1, 1, 2, requires_grad=True)
    losses.l1_weighted(pred, torch.tensor([[[[0.5, 2.0]]]])).backward()
    assert pred.grad.flatten().tolist() == pytest.approx([-0.5, -0.05])


# --- the discriminators --------------------------------------------------------------------

def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, c, 32, 32, generator=g) for c in (1, 2, 2)]


def _after_step(adversary, x, pred, y, mask):
    adv = copy.deepcopy(adversary)
    adv.discriminator_step(x, pred, y, mask)
    return [p.detach().clone() for p in adv.discriminators.parameters()], adv


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_no_discriminator_gradient_from_samples_missing_its_organelle(mode):
    torch.manual_seed(0)
    adversary = Adversary(GanConfig(width=4, mode=mode), organelles=2,
                          device=torch.device("cpu"))
    initial = [p.detach().clone() for p in adversary.discriminators.parameters()]
    x, pred, y = _batch(1)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # sample 2: no organelle 0
    base, _ = _after_step(adversary, x, pred, y, mask)
    x2, pred2, y2 = x.clone(), pred.clone(), y.clone()
    x2[2], pred2[2], y2[2] = 5 * torch.randn(1, 32, 32), torch.randn(2, 32, 32), 3.0
    changed, _ = _after_step(adversary, x2, pred2, y2, mask)
    n0 = len(list(adversary.discriminators[0].parameters()))
    for a, b in zip(base[:n0], changed[:n0], strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)
    # organelle 1 has no sample at all: its discriminator is not updated
    for p, q in zip(base[n0:], initial[n0:], strict=True):
        assert torch.equal(p, q)
    # the same change in a sample that has organelle 0 does move D_0 (the test can fail)
    mask_all = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    a, _ = _after_step(adversary, x, pred, y, mask_all)
    b, _ = _after_step(adversary, x2, pred2, y2, mask_all)
    assert not all(torch.allclose(p, q, atol=1e-7, rtol=0) for p, q in zip(a[:n0], b[:n0],
                                                                             strict=True))


def test_generator_step_leaves_discriminators_untouched():
    torch.manual_seed(0)
    adversary = Adversary(GanConfig(width=4), organelles=2, device=torch.device("cpu"))
    x, pred, _ = _batch(2)
    pred.requires_grad_(True)
    term, parts = adversary.generator_term(x, pred, torch.tensor([[1.0, 1.0]] * 3))
    term.backward()
    assert parts["g_adv"] > 0 and pred.grad.abs().sum() > 0
    assert all(p.grad is None and p.requires_grad for p in adversary.discriminators.parameters())


# --- training, resume, export, routing --------------------------------------------------------

def test_gan_training_logs_and_resumes_exactly(simulated, tmp_path):
    train(tiny(simulated, tmp_path / "a", steps=4))
    cut = tiny(simulated, tmp_path / "b", steps=4)
    assert train(cut, stop_at=2).step == 2
    assert "adversary" in torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    train(cut)
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert a[1]["d_loss"] == "" and a[2]["d_loss"] != ""  # L1-only warm-up of one step
    for step in (3, 4):
        for key in ("loss", "d_loss", "g_adv"):
            assert float(b[step][key]) == pytest.approx(float(a[step][key]), rel=1e-6,
                                                        abs=1e-7), (step, key)


@pytest.fixture(scope="module")
def bundle(simulated, tmp_path_factory):
    """A dynamic model (3 per-modality files) and a unified '*' model in one weights folder."""
    tmp = tmp_path_factory.mktemp("bundle")
    train(tiny(simulated, tmp / "dyn", model__condition="modality"))
    train(tiny(simulated, tmp / "uni", gan__weight=0))
    weights = tmp / "w"
    assert export_main(["--checkpoint", str(tmp / "dyn" / BEST), str(tmp / "uni" / BEST),
                        "--out", str(weights), "--patch", "32"]) == 0
    return tmp, weights


def test_dynamic_export_per_modality_equals_the_model_with_that_code(bundle):
    tmp, weights = bundle
    model = load_checkpoint(tmp / "dyn" / BEST).model
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 48)).astype(np.float32)
    outputs = {}
    for modality, channels in (("BF", [0, 1, 2, 3]), ("PC", [0, 1, 2, 3]), ("DIC", [0, 1, 2])):
        (path,) = weights.glob(f"*.{modality}.onnx")
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"input": x})[0]
        with torch.no_grad():
            expected = model(torch.from_numpy(x), code(modality)[None])[:, channels].numpy()
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4
        outputs[modality] = got[:, :3]
    # the code matters: the three files are three different models
    assert np.abs(outputs["BF"] - outputs["DIC"]).max() > 1e-6


def test_routing_keeps_dic_actin_and_unknown_modality_on_the_unified_entry(bundle):
    _, weights = bundle
    m = manifest.load(weights)
    unified = "nucleus-mitochondria-tubulin-actin-resgen"
    assert m.route(Organelle.ACTIN, Modality.DIC).name == unified
    assert m.route(Organelle.NUCLEUS, None).name == unified
    for modality in Modality:
        entry = m.route(Organelle.NUCLEUS, modality)
        assert entry.name != unified and entry.modalities == (modality,)
    dic = m.route(Organelle.NUCLEUS, Modality.DIC)
    assert dic.organelles == (Organelle.NUCLEUS, Organelle.MITOCHONDRIA, Organelle.TUBULIN)


def test_container_serves_all_four_outputs_for_every_modality(bundle, simulated, tmp_path,
                                                              capsys):
    _, weights = bundle
    folder = tmp_path / "in" / "images" / INPUT_FOLDER
    folder.mkdir(parents=True)
    for modality, study in (("BF", 1), ("PC", 2), ("DIC", 3)):
        (source,) = sorted((simulated / f"Study_{study}").glob(f"*_{modality}_z0.ome.tiff"))[:1]
        (folder / f"{modality}.ome.tiff").write_bytes(source.read_bytes())
    tifffile.imwrite(folder / "mystery.tiff", tifffile.imread(folder / "BF.ome.tiff"))
    out = tmp_path / "out"
    assert inference.main(["--input", str(tmp_path / "in"), "--output", str(out),
                           "--weights", str(weights), "--device", "cpu"], {}) == 0
    for name in ("BF", "PC", "DIC", "mystery"):
        for organelle in ORGANELLES:
            image = tifffile.imread(out / "images" / organelle.output_folder / f"{name}.tiff")
            assert image.shape == (64, 64) and np.isfinite(image).all()
    assert inference.main(["--weights", str(weights), "--check"], {}) == 0
    table = capsys.readouterr().out
    assert "nucleus-mitochondria-tubulin.DIC-resgen" in table
    (actin_dic,) = [r for r in table.splitlines() if r.split()[:2] == ["actin", "DIC"]]
    assert actin_dic.split()[-1] == "nucleus-mitochondria-tubulin-actin-resgen"


def test_conditioned_checkpoint_needs_a_modality_to_export(bundle):
    tmp, weights = bundle
    with pytest.raises(Exception, match="exports per modality"):
        export_checkpoint(tmp / "dyn" / BEST, weights / "other")


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.name)
def test_every_seed003_config_trains_and_exports(path, simulated, tmp_path):
    out = tmp_path / "run"
    assert train_main(["--config", str(path), "--set", f"data.roots=[{simulated}]",
                       "--set", f"out={out}", "--steps", "2", "--set", "val.tile=64",
                       "--set", "data.patch=64", "--set", "gan.start_step=1"]) == 0
    assert export_main(["--checkpoint", str(out / BEST), "--out", str(tmp_path / "w"),
                        "--patch", "64"]) == 0
    doc = json.loads((tmp_path / "w" / "manifest.json").read_text())
    cfg = yaml.safe_load(path.read_text())
    modalities = sorted(m for e in doc["models"] for m in e["modalities"])
    if cfg["model"]["condition"] == "modality":
        assert modalities == ["BF", "DIC", "PC"]
    elif len(cfg["data"]["modalities"]) == 3:
        assert modalities == ["*"]
    else:
        assert modalities == cfg["data"]["modalities"]


@pytest.mark.slow
def test_two_process_torchrun_with_discriminators(simulated, tmp_path):
    cfg = tiny(simulated, tmp_path / "run", steps=3, model__condition="modality")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    done = torchrun(config, REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("[train] done: step 3") == 2
    log = _log(tmp_path / "run")
    assert sorted(log) == [1, 2, 3] and all(log[s]["d_loss"] for s in (2, 3))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert len(state["adversary"]["discriminators"]) > 0
