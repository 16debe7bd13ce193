"""Training from a packed store (data.store): same fields of view, same samples, runs end to end."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")

from lightmycells.data.index import build_index, write_index  # noqa: E402
from lightmycells.data.pack import pack  # noqa: E402
from lightmycells.simulate.replica import make_replica  # noqa: E402
from lightmycells.train import data  # noqa: E402
from lightmycells.train.config import ConfigError, parse_config  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("replica")
    make_replica(root, studies=[3, 4, 28], max_fovs=2, scale=1 / 8, quirks=(), seed=2)
    write_index(root, build_index(root))
    store = root.parent / (root.name + ".store")
    pack(root, store)
    return root, store


def _cfg(root, store, **extra):
    raw = {"out": "unused", "steps": 2, "data": {
        "roots": [str(root)], "organelles": ["nucleus", "mitochondria"], "patch": 64,
        "cache": False, "store": str(store) if store else None, **extra}}
    return parse_config(raw)


@pytest.mark.parametrize("split", ["fov", "region"])
def test_store_gives_the_raw_fields_of_view_and_bit_identical_samples(packed, split):
    root, store = packed
    raw_fovs = data.index_fovs([root])
    stored = data.stored_fovs(store)
    key = lambda f: (f.study, f.image_id, f.modality, f.planes, f.z,  # noqa: E731
                     tuple(sorted(f.targets.items())))
    assert sorted(map(key, raw_fovs)) == sorted(map(key, stored))
    # region: patches from the rows above a held-out band (targets sliced by rows, lazily)
    raw_cfg = _cfg(root, None, split=split, val_fraction=0.5)
    store_cfg = _cfg(root, store, split=split, val_fraction=0.5)
    organelles = list(raw_cfg.data.organelles)
    fovs = data.with_targets(raw_fovs, organelles)
    from_raw = data.PatchDataset(fovs, organelles, raw_cfg.data, seed=7, length=40)
    from_store = data.PatchDataset(fovs, organelles, store_cfg.data, seed=7, length=40)
    assert isinstance(from_store.store, data.StoredImages)
    assert not isinstance(from_raw.store, data.StoredImages)
    for i in range(40):
        for a, b in zip(from_raw[i], from_store[i], strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # whole planes (validation) match the raw reader too, statistics included
    plane = raw_fovs[0].planes[0]
    a, b = data.image_store(raw_cfg.data).get(plane), from_store.store.get(plane)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert (a.offset, a.spread, a.vmin, a.vmax) == (b.offset, b.spread, b.vmin, b.vmax)


@pytest.mark.parametrize("resample_um", [0.2, 0.05])
def test_store_samples_at_a_pixel_size_equal_the_raw_readers(packed, resample_um):
    """With data.resample_um, patches cut from the store's lazily resampled planes (only the
    region a patch needs is read and resampled) equal the raw reader's, which resamples
    whole files; gamma and elastic augmentation included; validation planes too."""
    root, store = packed
    raw_cfg = _cfg(root, None, resample_um=resample_um, split="region", val_fraction=0.3)
    store_cfg = _cfg(root, store, resample_um=resample_um, split="region", val_fraction=0.3)
    organelles = list(raw_cfg.data.organelles)
    fovs = data.with_targets(data.index_fovs([root]), organelles)
    assert all(f.pixel_size_um for f in fovs)
    from_raw = data.PatchDataset(fovs, organelles, raw_cfg.data, seed=3, length=24)
    from_store = data.PatchDataset(fovs, organelles, store_cfg.data, seed=3, length=24)
    for i in range(24):
        for a, b in zip(from_raw[i], from_store[i], strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-4)
    plane, size = fovs[0].planes[0], fovs[0].pixel_size_um
    a = data.image_store(raw_cfg.data).get(plane, size)
    b = from_store.store.get(plane, size)
    lazy = from_store.store.patch_plane(plane, size)
    assert isinstance(lazy.pixels, data.ResampledPlane)
    assert a.pixels.shape == b.pixels.shape == lazy.pixels.shape != (0, 0)
    np.testing.assert_allclose(a.pixels, b.pixels, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lazy.pixels[5:40][3:20, 7:30]), a.pixels[8:25, 7:30],
                               rtol=1e-5, atol=1e-3)
    assert (a.offset, a.spread, a.vmin, a.vmax) == (b.offset, b.spread, b.vmin, b.vmax)


def test_config_refuses_store_with_mip(packed):
    root, store = packed
    assert _cfg(root, store, resample_um=0.2).data.resample_um == 0.2
    with pytest.raises(ConfigError, match="data.store serves single planes"):
        _cfg(root, store, zstack="mip")
    with pytest.raises(data.DataError, match="no index.json"):
        data.stored_fovs(root)


def test_cli_trains_from_the_store_with_workers(packed, tmp_path):
    from lightmycells.train.__main__ import main as train_main

    root, store = packed
    config = {
        "out": str(tmp_path / "run"), "steps": 3, "device": "cpu", "threads": 1,
        "checkpoint_every": 3, "progress": False,
        "data": {"roots": [str(root)], "organelles": ["mitochondria"], "patch": 32,
                 "batch_size": 2, "num_workers": 2, "cache": False, "store": str(store),
                 "split": "study", "val_fraction": 0.3, "max_val_images": 1},
        "model": {"depth": 2, "width": 4},
        "val": {"every": 3, "tile": 32},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert train_main(["--config", str(path)]) in (0, None)
    assert (tmp_path / "run" / "last.pt").exists()
    log = (tmp_path / "run" / "log.csv").read_text()
    assert "val_score" in log and len(log.splitlines()) >= 4


def test_raw_training_reads_the_index_and_skips_quirky_files(tmp_path):
    root = tmp_path / "quirky"
    replica = make_replica(root, studies=[25, 28], max_fovs=2, scale=1 / 8, seed=4)
    scanned = data.index_fovs([root])  # no index yet: every file, quirks included
    write_index(root, build_index(root))
    indexed = data.index_fovs([root])
    skipped = {line.split("\t")[1] for line in (root / "quirks.tsv").read_text().splitlines()[1:]
               if line.split("\t")[0] in ("metadata-only-bigtiff", "invalid-tiff-target",
                                          "constant-images")}
    used = {p.relative_to(root).as_posix() for f in indexed
            for p in [*f.planes, *f.targets.values()]}
    every = {p.relative_to(root).as_posix() for f in scanned
             for p in [*f.planes, *f.targets.values()]}
    assert skipped and skipped <= every and not skipped & used
    assert used == every - skipped
    assert len(replica.files) == len(every)
    cfg = _cfg(root, None)
    organelles = list(cfg.data.organelles)
    dataset = data.PatchDataset(data.with_targets(indexed, organelles), organelles, cfg.data,
                                seed=0, length=30)
    for i in range(30):  # every sample reads; a quirky file would raise DataError
        x, y, mask = dataset[i]
        assert np.isfinite(x.numpy()).all() and mask.sum() >= 1


def test_store_reader_falls_back_to_files_it_does_not_hold(packed, tmp_path):
    root, store = packed
    reader = data.image_store(_cfg(root, store).data)
    outside = tmp_path / "image_1_BF_z0.ome.tiff"
    inside = data.index_fovs([root])[0].planes[0]
    outside.write_bytes(inside.read_bytes())
    a, b = reader.patch_plane(outside), reader.patch_plane(inside)
    assert isinstance(a.pixels, np.ndarray) and not isinstance(b.pixels, np.ndarray)
    np.testing.assert_array_equal(a.pixels, np.asarray(b.pixels))
    assert (a.offset, a.spread) == (b.offset, b.spread)


def test_a_store_packed_at_a_pixel_size_serves_the_raw_readers_samples(packed, tmp_path):
    """pack --pixel-um 0.16 stores every plane resampled (statistics of the planes as read):
    training at 0.16 µm from it reads the raw reader's patches bit for bit, without
    resampling anything; a finer data.resample_um is refused, as is a field of view without
    a pixel size."""
    import json

    from lightmycells.data.index import read_index
    from lightmycells.data.pack import PackError
    root, _ = packed
    store = tmp_path / "at016.store"
    pack(root, store, pixel_um=0.16)
    fovs = data.stored_fovs(store)
    assert {f.pixel_size_um for f in fovs} == {(0.16, 0.16)}
    index = json.loads((store / "index.json").read_text())
    assert index["pixel_size_um"] == 0.16
    assert {f["resampled_from_um"] for f in index["fovs"]} == {0.1, 0.06, 0.106}
    raw_cfg = _cfg(root, None, resample_um=0.16)
    store_cfg = _cfg(root, store, resample_um=0.16)
    organelles = list(raw_cfg.data.organelles)
    raw_fovs = data.with_targets(data.index_fovs([root]), organelles)
    from_raw = data.PatchDataset(raw_fovs, organelles, raw_cfg.data, seed=5, length=16)
    from_store = data.PatchDataset(data.with_targets(fovs, organelles), organelles,
                                   store_cfg.data, seed=5, length=16)
    lazy = from_store.store.patch_plane(fovs[0].planes[0], fovs[0].pixel_size_um)
    assert not isinstance(lazy.pixels, data.ResampledPlane)  # read as stored
    for i in range(16):
        for a, b in zip(from_raw[i], from_store[i], strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    plane = raw_fovs[0].planes[0]
    a = data.image_store(raw_cfg.data).get(plane, raw_fovs[0].pixel_size_um)
    b = from_store.store.get(plane, (0.16, 0.16))
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert (a.offset, a.spread, a.vmin, a.vmax) == (b.offset, b.spread, b.vmin, b.vmax)
    with pytest.raises(data.DataError, match="packed at 0.16 µm; data.resample_um 0.1"):
        data.image_store(_cfg(root, store, resample_um=0.1).data)
    broken = read_index(root / "lmc_index.json")
    broken["fovs"][0]["pixel_size_um"] = None
    (tmp_path / "index.json").write_text(json.dumps(broken))
    with pytest.raises(PackError, match="no pixel size, so it cannot be packed at 0.16"):
        pack(root, tmp_path / "x.store", index_path=tmp_path / "index.json", pixel_um=0.16)
