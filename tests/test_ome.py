import numpy as np
import pytest
import tifffile

from lightmycells import ome
from lightmycells.vocab import Modality


def test_round_trip_keeps_pixels_pixel_size_and_channel(tmp_path):
    image = np.random.default_rng(0).random((37, 53), dtype=np.float32)
    path = ome.write(tmp_path / "a.ome.tiff", image, channel="nucleus", pixel_size_um=(0.1, 0.12))
    back, meta = ome.read(path)
    np.testing.assert_array_equal(back, image)
    assert meta.pixel_size_um == pytest.approx((0.1, 0.12))
    assert meta.axes == "YX"
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("word,expected", [("BF", "BF"), ("PC", "PC"), ("DIC", "DIC")])
def test_modality_from_channel_name(tmp_path, word, expected):
    path = ome.write(tmp_path / "x.ome.tiff", np.zeros((20, 20), np.uint16), channel=word,
                     pixel_size_um=(0.065, 0.065))
    _, meta = ome.read(path)
    assert meta.modality == Modality(expected)
    assert meta.modality_source == "Channel@Name"


def test_modality_from_file_name_and_z(tmp_path):
    path = tmp_path / "image_12_DIC_z3.ome.tiff"
    tifffile.imwrite(path, np.zeros((20, 20), np.uint16))
    _, meta = ome.read(path)
    assert (meta.modality, meta.modality_source, meta.z) == (Modality.DIC, "file name", 3)
    assert meta.name == "image_12_DIC_z3"


def test_fluor_and_unit_conversion():
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           '<Pixels PhysicalSizeX="80" PhysicalSizeXUnit="nm" PhysicalSizeY="80" '
           'PhysicalSizeYUnit="nm"><Channel Fluor="PC"/></Pixels></Image></OME>')
    meta = ome.parse_meta("u.tiff", xml)
    assert meta.modality == Modality.PC and meta.modality_source == "Channel@Fluor"
    assert meta.pixel_size_um == pytest.approx((0.08, 0.08))


def test_rgb_is_rejected(tmp_path):
    path = tmp_path / "rgb.tiff"
    tifffile.imwrite(path, np.zeros((20, 20, 3), np.uint8), photometric="rgb")
    with pytest.raises(ome.ImageError, match="samples per pixel"):
        ome.read(path)


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "e.tiff"
    path.write_bytes(b"")
    with pytest.raises(ome.ImageError, match="empty"):
        ome.read(path)
