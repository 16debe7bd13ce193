"""Training at a physical pixel size, pixel-size ranges, z-stack reduction, and the training
input normalisation being the engine's (issues 11 and 14)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightmycells.engine import normalize, resample
from lightmycells.io import ome
from lightmycells.train import data
from lightmycells.train.__main__ import main as train_main
from lightmycells.train.config import ZStack
from lightmycells.train.export import export_checkpoint
from lightmycells.train.loop import BEST, train
from lightmycells.vocab import Organelle
from tests.test_train_helpers import make_studies, tiny_config

pytestmark = pytest.mark.torch

RADIUS_UM = 3.0


def _disc(shape, pixel_um, center_um, radius_um=RADIUS_UM):
    """A 0/1000 disc of ``radius_um`` at ``center_um`` (y, x) on a grid of ``pixel_um``."""
    yy = (np.arange(shape[0]) + 0.5) * pixel_um[0]
    xx = (np.arange(shape[1]) + 0.5) * pixel_um[1]
    d2 = (yy[:, None] - center_um[0]) ** 2 + (xx[None, :] - center_um[1]) ** 2
    return np.where(d2 <= radius_um**2, 1000.0, 0.0).astype(np.float32)


def _field_shape(pixel_um):
    return round(FIELD_UM[0] / pixel_um[0]), round(FIELD_UM[1] / pixel_um[1])


def _radius_um(image, pixel_um):
    """Radius (µm) of the region above half the maximum: sqrt(area / π)."""
    area = (image > 0.5 * image.max()).sum() * pixel_um[0] * pixel_um[1]
    return float(np.sqrt(area / np.pi))


def _centroid_um(image, pixel_um):
    mask = image > 0.5 * image.max()
    ys, xs = np.nonzero(mask)
    return (ys.mean() + 0.5) * pixel_um[0], (xs.mean() + 0.5) * pixel_um[1]


FIELD_UM = (14.0, 13.0)
CENTER_UM = (6.9, 7.1)


def _disc_study(root, pixel_um, shape=None, center_um=CENTER_UM):
    """One field of view: a disc input (2 planes) and a disc nucleus target, same place.

    The field spans :data:`FIELD_UM` unless ``shape`` is given.
    """
    shape = shape or _field_shape(pixel_um)
    folder = root / "Study_1"
    folder.mkdir(parents=True)
    disc = _disc(shape, pixel_um, center_um)
    for z in range(2):
        ome.write(folder / f"image_1_BF_z{z}.ome.tiff", (disc * (1 + z) + 100).astype(np.uint16),
                  channel="BF", pixel_size_um=pixel_um)
    ome.write(folder / "image_1_Nucleus.ome.tiff", disc.astype(np.uint16), channel="Nucleus",
              pixel_size_um=pixel_um)
    return root


@pytest.mark.parametrize("pixel_um", [(0.08, 0.08), (0.08, 0.1), (0.05, 0.06)])
def test_disc_keeps_its_physical_radius_through_resample_um_and_back(tmp_path, pixel_um):
    root = _disc_study(tmp_path, pixel_um)
    (fov,) = data.index_fovs([root])
    assert fov.pixel_size_um == pytest.approx(pixel_um)
    store = data.ImageStore(2.0, 99.8, cache=True, resample_um=0.2)
    target = store.get(fov.targets[Organelle.NUCLEUS], fov.pixel_size_um)
    plane = store.get(fov.planes[0], fov.pixel_size_um)
    # the field of view keeps its physical size: 14 × 13 µm = 70 × 65 pixels of 0.2 µm
    assert target.pixels.shape == (70, 65)
    # one output pixel (0.2 µm) of slack for the disc's edge on a coarser grid
    assert _radius_um(target.pixels, (0.2, 0.2)) == pytest.approx(RADIUS_UM, abs=0.1)
    # input and target resampled alike: their discs share a centre, at the right place in µm
    assert _centroid_um(plane.pixels - 100, (0.2, 0.2)) == pytest.approx(CENTER_UM, abs=0.1)
    assert _centroid_um(target.pixels, (0.2, 0.2)) == pytest.approx(CENTER_UM, abs=0.1)
    back = resample.back_to_grid(target.pixels, _field_shape(pixel_um), 0.2, pixel_um)
    assert _radius_um(back, pixel_um) == pytest.approx(RADIUS_UM, abs=0.1)
    assert store.get(fov.targets[Organelle.NUCLEUS], fov.pixel_size_um) is target  # cached


def test_anisotropic_pixels_where_one_axis_grows(tmp_path):
    root = _disc_study(tmp_path, (0.05, 0.15))
    (fov,) = data.index_fovs([root])
    store = data.ImageStore(2.0, 99.8, cache=False, resample_um=0.1)
    target = store.get(fov.targets[Organelle.NUCLEUS], fov.pixel_size_um)
    assert _radius_um(target.pixels, (0.1, 0.1)) == pytest.approx(RADIUS_UM, abs=0.1)


def test_resample_without_a_pixel_size_names_the_file(tmp_path):
    folder = tmp_path / "Study_1"
    folder.mkdir()
    path = ome.write(folder / "image_1_BF_z0.ome.tiff", np.ones((32, 32), np.uint16),
                     channel="BF", pixel_size_um=None)
    (fov,) = data.index_fovs([tmp_path])
    with pytest.raises(data.DataError, match=r"image_1_BF_z0.*no pixel size.*resample_um"):
        data.ImageStore(2.0, 99.8, cache=False, resample_um=0.2).get(path, fov.pixel_size_um)


# --- the training input normalisation is the engine's ----------------------------------------

@pytest.mark.parametrize("kind", ["camera", "tiny_spread", "constant"])
def test_training_normalisation_equals_the_engines(tmp_path, kind):
    rng = np.random.default_rng(3)
    image = {
        "camera": rng.poisson(800, (64, 80)).astype(np.uint16),
        # a spread below normalize.EPS: the engine divides by 1 (the old training code by 1e-6)
        "tiny_spread": (rng.random((64, 80)) * 4e-7).astype(np.float32),
        "constant": np.full((64, 80), 7, np.uint16),
    }[kind]
    path = ome.write(tmp_path / "x.ome.tiff", image, channel="BF", pixel_size_um=(0.1, 0.1))
    read, _ = ome.read(path)
    expected, _ = normalize.Percentile(2.0, 99.8).before(read)
    got = data.ImageStore(2.0, 99.8, cache=False).get(path).normalized()
    np.testing.assert_array_equal(got, expected)


def test_unaugmented_patch_is_the_engines_normalisation_of_the_crop(tmp_path):
    root = make_studies(tmp_path, studies=1, fovs=1, planes=1, size=(48, 48))
    (fov,) = data.index_fovs([root])
    cfg = tiny_config(root, "unused", data__patch=48, data__augment={
        "dihedral": False, "contrast": 0.0, "brightness": 0.0, "gamma": 0.0}).data
    x, y, _ = data.PatchDataset([fov], [Organelle.NUCLEUS], cfg, seed=0, length=1)[0]
    engine = normalize.Percentile(2.0, 99.8)
    np.testing.assert_array_equal(x[0].numpy(), engine.before(ome.read(fov.planes[0])[0])[0])
    truth = ome.read(fov.targets[Organelle.NUCLEUS])[0]
    np.testing.assert_array_equal(y[0].numpy(), engine.before(truth)[0])


# --- ranges and z-stacks --------------------------------------------------------------------

def _two_pixel_sizes(root):
    make_studies(root / "a", studies=1, fovs=2)  # 0.1 µm
    folder = root / "a" / "Study_2"
    folder.mkdir()
    for z in range(2):
        ome.write(folder / f"image_9_PC_z{z}.ome.tiff", np.full((48, 48), 5 + z, np.uint16),
                  channel="PC", pixel_size_um=(0.3, 0.3))
    return root / "a"


def test_pixel_size_range_keeps_lo_and_drops_hi(tmp_path):
    fovs = data.index_fovs([_two_pixel_sizes(tmp_path)])
    assert len(fovs) == 3
    assert [f.image_id for f in data.in_pixel_range(fovs, 0.1, 0.3)] == ["1", "2"]  # [lo, hi)
    assert [f.image_id for f in data.in_pixel_range(fovs, 0.2, 0.5)] == ["9"]
    with pytest.raises(data.DataError, match=r"no field of view has a pixel size in \[0.5, 1.0\)"
                                             r" µm \(found: 0.1, 0.3\)"):
        data.in_pixel_range(fovs, 0.5, 1.0)


def test_zstack_modes_choose_the_input(tmp_path):
    root = make_studies(tmp_path, studies=1, fovs=1, planes=3)
    (fov,) = data.index_fovs([root])
    store = data.ImageStore(2.0, 99.8, cache=True)
    stack = np.stack([ome.read(p)[0] for p in fov.planes]).astype(np.float32)
    mip = store.get(data.input_source(fov, ZStack.MIP), fov.pixel_size_um)
    np.testing.assert_array_equal(mip.pixels, stack.max(axis=0))
    assert data.input_source(fov, ZStack.BEST, np.random.default_rng(0)) == fov.planes[1]  # csv
    drawn = {data.input_source(fov, ZStack.PLANE, np.random.default_rng(s)) for s in range(30)}
    assert drawn == set(fov.planes)


def test_export_writes_scale_range_and_zstack(tmp_path):
    root = make_studies(tmp_path / "d", size=(64, 64))
    cfg = tiny_config(root, tmp_path / "run", steps=2, checkpoint_every=2, val__every=2,
                      data__resample_um=0.2, data__pixel_size_range_um=[0.05, 0.15],
                      data__zstack="mip")
    train(cfg)
    state = torch.load(tmp_path / "run" / BEST, weights_only=False)
    assert state["pixel_size_um"] == 0.2
    report = export_checkpoint(tmp_path / "run" / BEST, tmp_path / "w")
    entry = report.entry
    assert entry["pixel_size_um"] == 0.2
    assert entry["pixel_size_um_range"] == [0.05, 0.15] and entry["zstack"] == "mip"
    doc = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert doc["models"][0]["pixel_size_um_range"] == [0.05, 0.15]
    # defaults write neither key, so such an entry reads as before
    plain = tiny_config(root, tmp_path / "run2", steps=1, checkpoint_every=1, val__every=1)
    train(plain)
    entry = export_checkpoint(tmp_path / "run2" / BEST, tmp_path / "w2").entry
    assert "pixel_size_um_range" not in entry and "zstack" not in entry
    assert entry["pixel_size_um"] == 0.1


@pytest.mark.parametrize("path", sorted(Path("configs/zoo").glob("*.yaml")), ids=lambda p: p.stem)
def test_zoo_config_runs_at_any_step_count(tmp_path, path):
    raw = yaml.safe_load(path.read_text())["data"]
    lo, hi = raw.get("pixel_size_range_um") or (0.09, 0.11)
    pixel_um = (lo + hi) / 2  # inside a per-range config's range
    modalities = tuple(raw.get("modalities") or ("BF", "PC"))  # a per-modality config's own
    root = make_studies(tmp_path / "d", size=(64, 64), pixel_um=pixel_um, modalities=modalities)
    out = tmp_path / "run"
    common = ["--set", f"data.roots=[{root}]", "--set", "data.batch_size=2",
              "--set", "data.max_val_images=1", "--steps", "2"]
    init = []
    if first := yaml.safe_load(path.read_text()).get("init_from"):  # a second stage:
        stage1 = next(p for p in Path("configs/zoo").glob("*.yaml")  # run the config it names
                      if Path(yaml.safe_load(p.read_text())["out"]) == Path(first).parent)
        assert train_main(["--config", str(stage1), "--set", f"out={tmp_path / 'first'}",
                           *common]) == 0
        init = ["--set", f"init_from={tmp_path / 'first' / Path(first).name}"]
    code = train_main(["--config", str(path), "--set", f"out={out}", *common, *init])
    assert code == 0
    state = torch.load(out / BEST, weights_only=False)
    assert state["step"] == 2
    assert state["pixel_size_um"] == pytest.approx(raw.get("resample_um") or pixel_um)
