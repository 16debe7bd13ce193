"""pack on the replica: exact pixels, exact statistics, a killed pack resumes to the same store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from lightmycells.data.__main__ import main
from lightmycells.data.index import build_index, write_index
from lightmycells.data.pack import DONE_NAME, PackError, pack
from lightmycells.data.store import Store, StoreError
from lightmycells.simulate.replica import make_replica

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("replica")
    make_replica(root, studies=[3, 7, 28], max_fovs=2, scale=1 / 8, seed=5)
    write_index(root, build_index(root))
    return root


def _contents(store_path: Path) -> tuple[dict, str]:
    store = Store(store_path)
    pixels = {rel: store.read(rel) for rel in store.refs}
    return pixels, (store_path / "planes.tsv").read_text()


def test_store_returns_exactly_the_source_pixels_and_statistics(indexed, tmp_path):
    out = tmp_path / "store"
    summary = pack(indexed, out, jobs=2)
    store = Store(out)
    assert summary.packed == summary.planes == len(store.refs) > 100
    rng = np.random.default_rng(0)
    for rel, ref in store.refs.items():
        source = tifffile.imread(indexed / rel)  # independent reader of the source file
        stored = store.read(rel)
        assert stored.dtype == source.dtype == np.uint16
        np.testing.assert_array_equal(stored, source)
        top, left = (int(rng.integers(0, n // 2 + 1)) for n in source.shape)
        region = store.plane(rel)[top: top + 40, left: left + 30]
        np.testing.assert_array_equal(region, source[top: top + 40, left: left + 30])
        x = source.astype(np.float64)
        assert ref.stats["min"] == x.min() and ref.stats["max"] == x.max()
        assert ref.percentile(2) == np.percentile(source.astype(np.float32), [2.0, 99.8])[0]
        assert ref.percentile(99.8) == np.percentile(source.astype(np.float32), [2.0, 99.8])[1]
    assert len(store.fovs) == len(Store(out).index["fovs"])
    with pytest.raises(StoreError, match="not stored"):
        next(iter(store.refs.values())).percentile(50)


def test_killed_pack_resumes_to_the_same_store(indexed, tmp_path):
    whole = tmp_path / "whole"
    pack(indexed, whole, jobs=1)
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightmycells.data", "pack", str(indexed), "--out",
         str(killed), "--jobs", "1", "--no-progress"], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    done = killed / DONE_NAME
    while time.monotonic() < deadline and proc.poll() is None:
        if done.exists() and done.read_text().count("\n") >= 10:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(30) == -signal.SIGKILL, "the pack finished before it could be killed"
    assert not (killed / "index.json").exists()  # an unfinished store is not readable
    with pytest.raises(StoreError, match="did not finish"):
        Store(killed)
    with done.open("a") as log:  # a line torn by the kill must not count as packed
        log.write('{"rel": "Study_3/image_53_BF_z0.ome.tiff", "sta')
    first = done.read_text().count("\n")
    summary = pack(indexed, killed, jobs=2)
    assert summary.skipped == first  # the complete lines, not the torn one
    assert summary.packed + summary.skipped == summary.planes
    a, b = _contents(whole), _contents(killed)
    assert a[1] == b[1]  # identical statistics table
    assert a[0].keys() == b[0].keys()
    for rel in a[0]:
        np.testing.assert_array_equal(a[0][rel], b[0][rel])


def test_limit_then_rerun_and_layout_guard(indexed, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["pack", str(indexed), "--out", str(out), "--jobs", "1", "--no-progress"]
    assert main([*args, "--limit", "5"]) == 0
    assert "stopped early" in capsys.readouterr().out
    assert main(args) == 0
    assert "already packed" in capsys.readouterr().out
    # a store made from another index is refused, not mixed
    other = tmp_path / "other"
    make_replica(other, studies=[1], max_fovs=1, scale=1 / 8, quirks=())
    write_index(other, build_index(other))
    with pytest.raises(PackError, match="another index"):
        pack(other, out)


def test_fast_chunk_reader_agrees_with_zarr_and_falls_back(indexed, tmp_path):
    import zarr
    from zarr.codecs import BloscCodec

    out = tmp_path / "store"
    pack(indexed, out, jobs=1)
    store = Store(out)
    rel = max(store.refs, key=lambda r: np.prod(store.shape(r)))
    ref = store.ref(rel)
    array = zarr.open_array(out / ref.array, mode="r")
    assert store._chunks(ref.array) is not None  # the synchronous path is the one used
    rng = np.random.default_rng(1)
    h, w = store.shape(rel)
    for _ in range(30):  # edges, empty and clipped windows included
        y, x = (int(v) for v in rng.integers(0, [h + 5, w + 5]))
        dy, dx = (int(v) for v in rng.integers(0, 300, 2))
        np.testing.assert_array_equal(store.read(rel, slice(y, y + dy), slice(x, x + dx)),
                                      array[ref.slot, y: y + dy, x: x + dx])
    # an array written in another layout (sharded, zstd) is read through zarr itself
    source = np.asarray(array)
    zarr.create_array(out / "sharded", shape=source.shape, dtype=source.dtype,
                      chunks=(1, 32, 32), shards=(1, 64, 64), fill_value=0,
                      compressors=BloscCodec(cname="zstd"))[...] = source
    store.refs[rel] = type(ref)(rel, "sharded", ref.slot, ref.stats)
    assert store._chunks("sharded") is None
    np.testing.assert_array_equal(store.read(rel), tifffile.imread(indexed / rel))


def test_a_file_broken_after_indexing_fails_alone(indexed, tmp_path, capsys):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(indexed, root)
    victim = sorted(root.glob("Study_7/*_z0.ome.tiff"))[0]
    victim.write_bytes(b"gone")
    out = tmp_path / "store"
    args = ["pack", str(root), "--out", str(out), "--jobs", "2", "--no-progress"]
    assert main(args) == 1
    text = capsys.readouterr()
    assert f"FAILED {victim}" in text.out and "1 failed" in text.out
    assert "not complete" in text.err and not (out / "index.json").exists()
    done = (out / DONE_NAME).read_text().count("\n")
    shutil.copy(indexed / victim.relative_to(root), victim)  # repaired: the rerun finishes
    assert main(args) == 0
    assert f"1 packed now, {done} already packed" in capsys.readouterr().out
    np.testing.assert_array_equal(Store(out).read(victim.relative_to(root).as_posix()),
                                  tifffile.imread(victim))
