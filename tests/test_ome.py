import numpy as np
import pytest
import tifffile

from lightmycells.io import ome
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


# --- item 2 of issue 2: formats the reader accepts, outputs Grand Challenge accepts --------

def _plain(tmp_path, name, array, **kwargs):
    path = tmp_path / name
    kwargs.setdefault("photometric", "minisblack")
    tifffile.imwrite(path, array, **kwargs)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("options", [
    {}, {"compression": "lzw"}, {"compression": "zlib"}, {"compression": "zstd"},
    {"bigtiff": True}, {"bigtiff": True, "compression": "zlib", "tile": (16, 16)},
], ids=["plain", "lzw", "zlib", "zstd", "bigtiff", "bigtiff-zlib-tiled"])
def test_reads_supported_dtypes_compressions_and_bigtiff(tmp_path, dtype, options):
    image = (np.random.default_rng(1).random((19, 33)) * 200).astype(dtype)
    path = _plain(tmp_path, "image_3_PC_z2.tif", image, **options)
    with tifffile.TiffFile(path) as tif:  # the file really is what the test claims
        assert tif.is_bigtiff == bool(options.get("bigtiff"))
    back, meta = ome.read(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, image)
    assert (meta.axes, meta.modality, meta.z) == ("YX", Modality.PC, 2)


def test_ome_z_stack_and_plain_multipage_read_as_zyx(tmp_path):
    stack = np.arange(3 * 20 * 24, dtype=np.uint16).reshape(3, 20, 24)
    written = ome.write(tmp_path / "s.ome.tiff", stack, channel="BF", pixel_size_um=(0.2, 0.2))
    plain = _plain(tmp_path, "p.tif", stack, compression="lzw")
    for path in (written, plain):
        back, meta = ome.read(path)
        assert meta.axes == "ZYX"
        np.testing.assert_array_equal(back, stack)


def test_ome_xml_tczyx_with_singletons_is_2d(tmp_path):
    path = tmp_path / "t.ome.tiff"
    tifffile.imwrite(path, np.ones((1, 1, 1, 20, 30), np.uint16), ome=True,
                     metadata={"axes": "TCZYX", "Channel": {"Name": "DIC"}})
    back, meta = ome.read(path)
    assert back.shape == (20, 30) and meta.axes == "YX" and meta.modality == Modality.DIC


def test_plain_tiff_takes_stated_modality_and_resolution_tags(tmp_path):
    path = _plain(tmp_path, "uuid-like-name.tiff", np.zeros((20, 20), np.uint16),
                  resolution=(1e4 / 0.25, 1e4 / 0.5), resolutionunit="CENTIMETER")
    _, meta = ome.read(path)
    assert (meta.modality, meta.modality_source) == (None, "unknown")
    _, meta = ome.read(path, modality=Modality.PC)
    assert (meta.modality, meta.modality_source) == (Modality.PC, "stated")
    assert meta.pixel_size_um == pytest.approx((0.5, 0.25))


def test_file_metadata_outranks_stated_modality(tmp_path):
    path = ome.write(tmp_path / "a.ome.tiff", np.zeros((20, 20), np.uint16), channel="DIC",
                     pixel_size_um=(0.1, 0.1))
    _, meta = ome.read(path, modality=Modality.BF)
    assert (meta.modality, meta.modality_source) == (Modality.DIC, "Channel@Name")


def test_imagej_micron_resolution(tmp_path):
    path = _plain(tmp_path, "ij.tif", np.zeros((20, 20), np.uint16), imagej=True,
                  resolution=(1 / 0.065, 1 / 0.065), metadata={"unit": "micron"})
    _, meta = ome.read(path)
    assert meta.pixel_size_um == pytest.approx((0.065, 0.065))


@pytest.mark.parametrize("attributes,expected,source", [
    ('ContrastMethod="Phase"', Modality.PC, "Channel@ContrastMethod"),
    ('ContrastMethod="DIC" IlluminationType="Transmitted"', Modality.DIC,
     "Channel@ContrastMethod"),
    ('IlluminationType="Transmitted"', Modality.BF, "Channel@IlluminationType"),
    ('IlluminationType="Epifluorescence"', None, "unknown"),
    ('Name="DAPI"', None, "unknown"),
])
def test_modality_from_contrast_method_and_illumination(attributes, expected, source):
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           f'<Pixels><Channel {attributes}/></Pixels></Image></OME>')
    meta = ome.parse_meta("x.tiff", xml)
    assert (meta.modality, meta.modality_source) == (expected, source)


def test_file_name_outranks_illumination_type():
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           '<Pixels><Channel IlluminationType="Transmitted"/></Pixels></Image></OME>')
    meta = ome.parse_meta("image_1_DIC_z0.ome.tiff", xml)
    assert (meta.modality, meta.modality_source) == (Modality.DIC, "file name")


@pytest.mark.parametrize("array,message", [
    (np.zeros((20, 20), np.complex64), "unsupported pixel type complex64"),
    (np.zeros((20, 20), bool), "unsupported pixel type bool"),
    (np.full((20, 20), np.nan, np.float32), "NaN or Inf"),
    (np.zeros((2, 20, 20, 3), np.uint8), "samples per pixel"),
    (np.zeros((2, 3, 20, 20), np.uint16), "unsupported axes"),
])
def test_rejected_pixels(tmp_path, array, message):
    photometric = "rgb" if array.shape[-1] == 3 else "minisblack"
    path = _plain(tmp_path, "bad.tif", array, photometric=photometric)
    with pytest.raises(ome.ImageError, match=message):
        ome.read(path)


def test_multichannel_ome_is_rejected(tmp_path):
    path = tmp_path / "c.ome.tiff"
    tifffile.imwrite(path, np.zeros((2, 20, 20), np.uint16), ome=True, metadata={"axes": "CYX"})
    with pytest.raises(ome.ImageError, match="2 channels"):
        ome.read(path)


def test_truncated_and_non_tiff_files_are_rejected(tmp_path):
    good = ome.write(tmp_path / "g.ome.tiff", np.ones((300, 300), np.float32), channel="BF",
                     pixel_size_um=(0.1, 0.1), compression=None)
    truncated = tmp_path / "t.tiff"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fake = tmp_path / "f.tiff"
    fake.write_bytes(b"this is not an image\n" * 10)
    for path in (truncated, fake):
        with pytest.raises(ome.ImageError, match="not a readable TIFF"):
            ome.read(path)


def _written_output(folder, compression, shape=(45, 301), pixel_size=(0.13, 0.11)):
    image = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    return ome.write(folder / "out.tiff", image, channel="mitochondria", pixel_size_um=pixel_size,
                     compression=compression)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_output_parses_with_ome_types(tmp_path, compression):
    from ome_types import from_tiff

    path = _written_output(tmp_path, compression)
    doc = from_tiff(path)  # validates against the OME schema
    pixels = doc.images[0].pixels
    assert (pixels.size_y, pixels.size_x, pixels.size_z) == (45, 301, 1)
    assert pixels.type.value == "float"
    assert pixels.channels[0].name == "mitochondria"
    assert pixels.physical_size_x == pytest.approx(0.11)
    assert pixels.physical_size_y == pytest.approx(0.13)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.is_tiled


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_output_is_accepted_by_grand_challenge_importer(tmp_path, compression):
    from panimg import convert
    from panimg.image_builders import image_builder_tiff

    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    path = _written_output(source, compression).resolve()
    result = convert(input_directory=source, output_directory=target,
                     builders=[image_builder_tiff], post_processors=[])
    assert path in result.consumed_files, result.file_errors
    (image,) = result.new_images
    assert (image.width, image.height) == (301, 45)
    assert image.voxel_width_mm == pytest.approx(0.11e-3)
    assert image.voxel_height_mm == pytest.approx(0.13e-3)


def test_grand_challenge_importer_rejects_output_without_pixel_size(tmp_path):
    # why write() insists on resolution tags: without them panimg refuses the file
    from panimg import convert
    from panimg.image_builders import image_builder_tiff

    source = tmp_path / "in"
    source.mkdir()
    path = ome.write(source / "x.tiff", np.zeros((20, 20), np.float32), channel="actin",
                     pixel_size_um=None)
    result = convert(input_directory=source, output_directory=tmp_path / "out",
                     builders=[image_builder_tiff], post_processors=[])
    assert path.resolve() not in result.consumed_files


@pytest.mark.parametrize("options,size,source", [
    ({"resolution": (1e4 / 0.25, 1e4 / 0.25), "resolutionunit": "CENTIMETER"}, (0.25, 0.25),
     "TIFF resolution"),
    ({"resolution": (72, 72), "resolutionunit": "INCH"}, None,
     "none (TIFF resolution of 352.8 µm per pixel ignored)"),
    ({}, None, "none"),
])
def test_pixel_size_source_and_implausible_resolution(tmp_path, options, size, source):
    path = _plain(tmp_path, "p.tif", np.zeros((20, 20), np.uint16), **options)
    _, meta = ome.read(path)
    assert meta.pixel_size_source == source
    assert meta.pixel_size_um == (pytest.approx(size) if size else None)


def test_ome_physical_size_outranks_resolution_tags(tmp_path):
    path = tmp_path / "o.ome.tiff"
    tifffile.imwrite(path, np.zeros((20, 20), np.uint16), ome=True, resolution=(72, 72),
                     resolutionunit="INCH", metadata={"PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2})
    _, meta = ome.read(path)
    assert (meta.pixel_size_um, meta.pixel_size_source) == ((0.2, 0.2), "OME PhysicalSize")


@pytest.mark.parametrize("shape,tile", [
    ((96, 120), (96, 128)), ((235, 171), (240, 176)), ((2044, 300), (256, 256)),
    ((17, 5), (32, 16)),
])
def test_small_images_get_small_tiles(tmp_path, shape, tile):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    path = ome.write(tmp_path / "t.tiff", image, channel="actin", pixel_size_um=(0.1, 0.1),
                     compression=None)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert (page.tilelength, page.tilewidth) == tile
    np.testing.assert_array_equal(ome.read(path)[0], image)
    tiles = -(-shape[0] // tile[0]) * -(-shape[1] // tile[1])
    assert path.stat().st_size < tiles * tile[0] * tile[1] * 4 + 20_000
