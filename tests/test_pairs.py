"""Training data from a CSV of the user's own pairs (TIFF, OME-TIFF, PNG)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from lightmycells.io import ome
from lightmycells.io.planes import read_plane
from lightmycells.train.config import DataConfig
from lightmycells.train.data import DataError, PatchDataset
from lightmycells.train.pairs import PAIRS_STUDY, read_pairs
from lightmycells.vocab import Modality, Organelle

pytestmark = pytest.mark.torch


def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def _pairs(tmp_path):
    rng = np.random.default_rng(0)
    bf = rng.integers(0, 4000, (64, 80), dtype=np.uint16)
    ome.write(tmp_path / "fov1_bf.ome.tiff", bf.astype(np.float32), channel="PC",
              pixel_size_um=(0.2, 0.2))
    tifffile.imwrite(tmp_path / "fov1_dapi.tif", (bf // 2).astype(np.uint16))
    _png(tmp_path / "fov1_actin.png", (bf // 16).astype(np.uint8))
    _png(tmp_path / "small.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    return tmp_path


def test_rows_become_fields_of_view_and_bad_rows_are_named(tmp_path):
    folder = _pairs(tmp_path)
    csv = folder / "pairs.csv"
    csv.write_text(
        "input,organelle,target,modality,pixel_size_um\n"
        "fov1_bf.ome.tiff,nucleus,fov1_dapi.tif,,\n"          # row 2: metadata decides
        "fov1_bf.ome.tiff,actin,fov1_actin.png,,\n"           # row 3: same FOV, PNG target
        "fov1_bf.ome.tiff,tubulin,small.png,,\n"              # row 4: shapes differ
        "fov1_bf.ome.tiff,mitochondria,missing.tif,,\n"       # row 5: no such file
        "fov1_bf.ome.tiff,mitochondria,broken.tif,,\n"        # row 6: unreadable
        "fov1_bf.ome.tiff,golgi,fov1_dapi.tif,,\n"            # row 7: unknown organelle
        "fov1_dapi.tif,nucleus,fov1_actin.png,Ph3,0.65\n"     # row 8: stated modality, size
    )
    lines: list[str] = []
    index = read_pairs(csv, log=lines.append)
    assert len(index.problems) == 4 and lines[:4] == index.problems
    by_row = {int(line.split(" row ")[1].split(":")[0]): line for line in lines}
    assert "small.png" in by_row[4] and "(32, 32)" in by_row[4] and "(64, 80)" in by_row[4]
    assert "missing.tif: no such file" in by_row[5]
    assert "broken.tif" in by_row[6] and "TIFF" in by_row[6]
    assert "golgi" in by_row[7]
    assert all(line.startswith(f"{csv} row ") and "\n" not in line for line in lines)

    first, second = index.fovs
    assert first.study == PAIRS_STUDY and first.modality is Modality.PC  # from the OME-XML
    assert set(first.targets) == {Organelle.NUCLEUS, Organelle.ACTIN}
    assert first.pixel_size_um == pytest.approx((0.2, 0.2))
    assert second.modality is Modality.PC and second.pixel_size_um == (0.65, 0.65)


def test_missing_column_and_no_usable_row_are_errors(tmp_path):
    folder = _pairs(tmp_path)
    (folder / "a.csv").write_text("input,target\nfov1_bf.ome.tiff,fov1_dapi.tif\n")
    with pytest.raises(DataError, match="missing column.*organelle"):
        read_pairs(folder / "a.csv")
    (folder / "b.csv").write_text("input,organelle,target\nfov1_bf.ome.tiff,nucleus,small.png\n")
    with pytest.raises(DataError, match="no usable pair"):
        read_pairs(folder / "b.csv", log=lambda _: None)


def test_png_reads_as_float32_with_its_values(tmp_path):
    values = np.arange(64 * 80, dtype=np.uint16).reshape(64, 80)
    plane = read_plane(_png(tmp_path / "x.png", values))
    assert plane.pixels.dtype == np.float32 and plane.pixel_size_um is None
    np.testing.assert_array_equal(plane.pixels, values)
    _png(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ome.ImageError, match="rgb.png: colour PNG"):
        read_plane(tmp_path / "rgb.png")


def test_pairs_train_patches_with_masks(tmp_path):
    folder = _pairs(tmp_path)
    (folder / "p.csv").write_text("input,organelle,target\n"
                                  "fov1_bf.ome.tiff,nucleus,fov1_dapi.tif\n")
    index = read_pairs(folder / "p.csv")
    organelles = [Organelle.NUCLEUS, Organelle.ACTIN]
    cfg = DataConfig(roots=[folder], organelles=organelles, patch=32)
    data = PatchDataset(index.fovs, organelles, cfg, seed=1, length=4)
    x, y, mask = data[0]
    assert x.shape == (1, 32, 32) and y.shape == (2, 32, 32)
    assert mask.tolist() == [1.0, 0.0] and float(y[1].abs().sum()) == 0.0


def test_a_pair_without_any_modality_is_assumed_bright_field_and_says_so(tmp_path):
    folder = _pairs(tmp_path)
    (folder / "p.csv").write_text("input,organelle,target\nfov1_dapi.tif,nucleus,fov1_actin.png\n")
    lines: list[str] = []
    index = read_pairs(folder / "p.csv", log=lines.append)
    assert index.fovs[0].modality is Modality.BF and not index.problems
    assert len(lines) == 1 and "fov1_dapi.tif" in lines[0] and "assuming BF" in lines[0]
