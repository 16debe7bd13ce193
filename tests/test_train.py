import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightmycells.train import data
from lightmycells.train.__main__ import main as train_main
from lightmycells.train.config import ConfigError, load_config, parse_config
from lightmycells.train.loop import LAST, lr_factor, train
from lightmycells.vocab import Modality, Organelle
from tests.test_train_helpers import make_studies, tiny_config

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return make_studies(tmp_path_factory.mktemp("lmc"))


def _losses(out):
    with (out / "log.csv").open() as handle:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(handle) if r["loss"]}


# --- config ---------------------------------------------------------------------------------

def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"out": "x", "steps": 1,
                                    "data": {"roots": ["r"], "organelles": ["nucleus"],
                                             "pach": 64}}))
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.pach: Extra inputs"):
        load_config(path)


def test_overrides_and_depth_check(tmp_path):
    raw = {"out": "x", "steps": 1, "data": {"roots": ["r"], "organelles": ["actin"]}}
    cfg = parse_config(raw, overrides=["steps=7", "model.width=8", "data.patch=64"])
    assert (cfg.steps, cfg.model.width, cfg.data.patch) == (7, 8, 64)
    with pytest.raises(ConfigError, match=r"multiple of 2\*\*model.depth = 16 \(got 40\)"):
        parse_config(raw, overrides=["model.depth=4", "val.tile=40", "data.patch=64"])


def test_cli_rejects_bad_config_with_exit_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("out: x\nsteps: 0\ndata: {roots: [r], organelles: [nucleus]}\n")
    assert train_main(["--config", str(path)]) == 2
    assert "steps: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_lr_schedule_warms_up_then_decays_to_floor():
    values = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert max(values) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


# --- data -----------------------------------------------------------------------------------

def test_index_finds_planes_targets_and_best_z(studies):
    fovs = data.index_fovs([studies])
    assert len(fovs) == 6
    first = fovs[0]
    assert first.modality == Modality.BF and first.z == (0, 1)
    assert first.best_z == 1 and first.validation_plane().name == "image_1_BF_z1.ome.tiff"
    assert set(fovs[1].targets) == {Organelle.NUCLEUS, Organelle.MITOCHONDRIA}
    assert set(first.targets) == {Organelle.NUCLEUS}
    assert len(data.index_fovs([studies], [Modality.PC])) == 3


def test_index_rejects_a_folder_without_studies(tmp_path):
    with pytest.raises(data.DataError, match="no Study_"):
        data.index_fovs([tmp_path])


def test_split_by_study_keeps_studies_whole(studies):
    fovs = data.index_fovs([studies])
    train_fovs, val_fovs = data.split_fovs(fovs, "study", 0.5, seed=3)
    assert {f.study for f in train_fovs}.isdisjoint({f.study for f in val_fovs})
    assert len(train_fovs) + len(val_fovs) == 6 and val_fovs
    assert data.split_fovs(fovs, "fov", 0.5, seed=3) == data.split_fovs(fovs, "fov", 0.5, seed=3)


def test_sampling_balances_rare_organelles(studies):
    fovs = data.index_fovs([studies])
    weights = data.sampling_weights(fovs, [Organelle.NUCLEUS, Organelle.MITOCHONDRIA])
    with_mito = np.array([Organelle.MITOCHONDRIA in f.targets for f in fovs])
    # 3 of 6 FOVs have mitochondria: they get half the mass for it plus their nucleus share
    assert weights.sum() == pytest.approx(1.0)
    assert weights[with_mito].sum() == pytest.approx(0.5 + 0.5 * 3 / 6, abs=0.05)


def test_patches_are_deterministic_padded_and_masked(studies):
    fovs = data.index_fovs([studies])
    cfg = tiny_config(studies, "unused", data__patch=64,
                      data__organelles=["nucleus", "mitochondria"]).data
    ds = data.PatchDataset(fovs, [Organelle.NUCLEUS, Organelle.MITOCHONDRIA], cfg, seed=0,
                           length=40)
    x, y, mask = ds[5]
    assert x.shape == (1, 64, 64) and y.shape == (2, 64, 64)  # 48² images reflect-padded
    torch.testing.assert_close(ds[5][0], x)
    masks = torch.stack([ds[i][2] for i in range(40)])
    assert (masks[:, 0] == 1).all() and 0 < masks[:, 1].sum() < 40
    for i in range(40):
        _, y_i, m_i = ds[i]
        if m_i[1] == 0:
            assert (y_i[1] == 0).all()


def test_plain_percentile_normalisation_without_augmentation(studies):
    fovs = data.index_fovs([studies])
    cfg = tiny_config(studies, "unused", data__patch=48, data__augment={
        "dihedral": False, "contrast": 0.0, "brightness": 0.0, "gamma": 0.0}).data
    x, _, _ = data.PatchDataset(fovs, [Organelle.NUCLEUS], cfg, seed=0, length=1)[0]
    assert np.percentile(x.numpy(), 2) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(x.numpy(), 99.8) == pytest.approx(1.0, abs=1e-5)


# --- loop -----------------------------------------------------------------------------------

def test_training_lowers_the_loss_and_writes_its_files(studies, tmp_path):
    cfg = tiny_config(studies, tmp_path / "run", steps=40, checkpoint_every=20,
                      val__every=20)
    result = train(cfg)
    losses = _losses(tmp_path / "run")
    assert result.step == 40 and len(losses) == 40
    assert np.mean([losses[s] for s in range(36, 41)]) < 0.5 * np.mean(
        [losses[s] for s in range(1, 6)])
    assert result.best_score is not None and np.isfinite(result.best_score)
    for name in ("last.pt", "best.pt", "curve.png", "config.yaml"):
        assert (tmp_path / "run" / name).is_file()
    with (tmp_path / "run" / "log.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["val_score"]]
    assert len(rows) == 2 and -1 <= float(rows[-1]["val_nucleus_PCC"]) <= 1


def test_resume_reproduces_the_uninterrupted_run(studies, tmp_path):
    straight = tiny_config(studies, tmp_path / "a", steps=6, checkpoint_every=3)
    train(straight)
    cut = tiny_config(studies, tmp_path / "b", steps=6, checkpoint_every=3)
    first = train(cut, stop_at=3)
    assert first.step == 3 and (tmp_path / "b" / LAST).exists()
    second = train(cut)
    assert second.step == 6
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert sorted(b) == list(range(1, 7))  # the log was continued, not duplicated
    for step in (4, 5, 6):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7)


def _is_overlay(path: Path) -> bool:
    """A file of dotted keys applied over another config (configs/finetune.yaml)."""
    return any("." in key for key in yaml.safe_load(path.read_text()))


_CONFIGS = sorted(Path("configs").glob("**/*.yaml"))


@pytest.mark.parametrize("path", [p for p in _CONFIGS if not _is_overlay(p)],
                         ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.steps > 0 and cfg.data.organelles


@pytest.mark.parametrize("path", [p for p in _CONFIGS if _is_overlay(p)], ids=lambda p: p.name)
def test_overlay_configs_apply_to_a_shipped_training_config(path):
    overrides = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                 for key, value in yaml.safe_load(path.read_text()).items()]
    overrides = [o.removesuffix("\n...").removesuffix(" ...") for o in overrides]
    base = yaml.safe_load(Path("weights/nucleus.train.yaml").read_text())
    cfg = parse_config(base, source=str(path), overrides=overrides)
    assert cfg.steps > 0


def test_early_stopping_when_validation_stops_improving(studies, tmp_path):
    # a learning rate far below float32 resolution keeps the model, hence the score, fixed
    cfg = tiny_config(studies, tmp_path / "run", steps=20, val__every=2, val__patience=1,
                      model__norm="none", optim__lr=1e-12, optim__warmup_steps=0)
    result = train(cfg)
    assert (result.stopped, result.step) == ("early stopping", 4)
