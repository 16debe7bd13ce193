"""OME physical pixel sizes (issue 14, defect 1): units, a missing axis, implausible sizes.

Every file here is a real OME-TIFF written by tifffile with the OME attributes a microscope
would write; the known answers are the unit conversions themselves (100 nm = 0.1 µm).
"""

import numpy as np
import pytest
import tifffile

import inference
from lightmycells.io import ome
from lightmycells.vocab import INPUT_FOLDER


def ome_tiff(path, channel="BF", **options):
    """An OME-TIFF whose ``Pixels`` element carries the given PhysicalSize* attributes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = (np.random.default_rng(0).random((24, 32)) * 1000).astype(np.uint16)
    tiff = {k: options.pop(k) for k in ("resolution", "resolutionunit") if k in options}
    tifffile.imwrite(path, image, ome=True, metadata={"Channel": {"Name": channel}, **options},
                     **tiff)
    return path


@pytest.mark.parametrize("pixels,expected", [
    ({"PhysicalSizeX": 100, "PhysicalSizeXUnit": "nm"}, (0.1, 0.1)),  # was (100 µm, 0.1 µm)
    ({"PhysicalSizeY": 130, "PhysicalSizeYUnit": "nm"}, (0.13, 0.13)),  # was: no size at all
    ({"PhysicalSizeX": 0.5}, (0.5, 0.5)),  # OME's default unit is µm
    ({"PhysicalSizeX": 650, "PhysicalSizeXUnit": "Å"}, (0.065, 0.065)),
    ({"PhysicalSizeX": 80, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.09}, (0.09, 0.08)),
])
def test_missing_axis_takes_the_other_axis_value_and_unit(tmp_path, pixels, expected):
    _, meta = ome.read(ome_tiff(tmp_path / "a.ome.tiff", **pixels))
    assert meta.pixel_size_um == pytest.approx(expected)
    assert meta.pixel_size_source == "OME PhysicalSize"


@pytest.mark.parametrize("unit", ["s", "Hz", "pixel", "reference frame", "furlong"])
def test_non_length_unit_is_ignored_not_fatal(tmp_path, unit):
    path = ome_tiff(tmp_path / "t.ome.tiff", PhysicalSizeX=1, PhysicalSizeXUnit=unit,
                    PhysicalSizeY=1, PhysicalSizeYUnit=unit)
    image, meta = ome.read(path)
    assert image.shape == (24, 32)
    assert meta.pixel_size_um is None
    assert meta.pixel_size_source == (
        f"none (OME PhysicalSizeYUnit {unit!r} ignored: not a length unit)")


@pytest.mark.parametrize("size,unit,shown", [
    (100, "µm", "100"), (0.2, "mm", "200"), (1, "pm", "1e-06"), (0, "µm", "0"),
    (-0.1, "µm", "-0.1"),
])
def test_implausible_ome_size_is_ignored(tmp_path, size, unit, shown):
    path = ome_tiff(tmp_path / "r.ome.tiff", PhysicalSizeX=size, PhysicalSizeXUnit=unit)
    _, meta = ome.read(path)
    assert meta.pixel_size_um is None
    assert meta.pixel_size_source == (f"none (OME PhysicalSize of {shown} µm per pixel ignored: "
                                      f"outside 0.001–50 µm)")


def test_ignored_ome_size_falls_back_to_plausible_resolution_tags(tmp_path):
    path = ome_tiff(tmp_path / "f.ome.tiff", PhysicalSizeX=3, PhysicalSizeXUnit="s",
                    resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    _, meta = ome.read(path)
    assert meta.pixel_size_um == pytest.approx((0.25, 0.25))
    assert meta.pixel_size_source == ("TIFF resolution (OME PhysicalSizeXUnit 's' ignored: "
                                      "not a length unit)")


def test_both_refusals_are_said(tmp_path):
    path = ome_tiff(tmp_path / "b.ome.tiff", PhysicalSizeX=100, resolution=(72, 72),
                    resolutionunit="INCH")
    _, meta = ome.read(path)
    assert meta.pixel_size_um is None
    assert meta.pixel_size_source == (
        "none (TIFF resolution of 352.8 µm per pixel ignored; OME PhysicalSize of 100 µm per "
        "pixel ignored: outside 0.001–50 µm)")


def test_run_writes_the_image_and_names_file_and_unit_in_its_one_line(
        tmp_path, identity_weights, capsys):
    folder = tmp_path / "in" / "images" / INPUT_FOLDER
    ome_tiff(folder / "seconds.tiff", PhysicalSizeX=0.1, PhysicalSizeXUnit="s")
    ome_tiff(folder / "huge.tiff", PhysicalSizeX=0.5, PhysicalSizeXUnit="m")
    out = tmp_path / "out"
    code = inference.main([str(a) for a in ("--input", tmp_path / "in", "--output", out,
                                            "--weights", identity_weights, "--device", "cpu")],
                          {})
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    lines = {name: [line for line in captured.out.splitlines() if f" {name} " in line]
             for name in ("seconds.tiff", "huge.tiff")}
    (seconds,), (huge,) = lines["seconds.tiff"], lines["huge.tiff"]
    assert "written seconds.tiff" in seconds and "PhysicalSizeXUnit 's' ignored" in seconds
    assert "written huge.tiff" in huge and "5e+05 µm per pixel ignored" in huge
    assert len(list(out.rglob("*.tiff"))) == 8


def test_a_stated_pixel_size_fills_in_only_where_the_file_gives_none():
    from lightmycells.io.ome import parse_meta

    meta = parse_meta("a_BF.tiff", None, stated_pixel_size_um=(0.2, 0.3))
    assert meta.pixel_size_um == (0.2, 0.3) and meta.pixel_size_source == "stated"
    kept = parse_meta("a_BF.tiff", None, fallback_pixel_size_um=(0.1, 0.1),
                      stated_pixel_size_um=(0.2, 0.3))
    assert kept.pixel_size_um == (0.1, 0.1) and kept.pixel_size_source == "TIFF resolution"
    refused = parse_meta("a_BF.tiff", None, fallback_source="none (72 dpi ignored)",
                         stated_pixel_size_um=(0.2, 0.2))
    assert refused.pixel_size_source == "stated (72 dpi ignored)"


def test_header_only_metadata_is_what_read_gives(tmp_path):
    """read_meta (training's pixel sizes, evaluation's modality) reads a size that only the
    resolution tags hold, as inference does; the header-only path once read the OME-XML only."""
    path = ome_tiff(tmp_path / "t_PC.ome.tiff", PhysicalSizeX=3, PhysicalSizeXUnit="s",
                    resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    _, full = ome.read(path)
    header = ome.read_meta(path)
    assert header.pixel_size_um == full.pixel_size_um == pytest.approx((0.25, 0.25))
    assert (header.pixel_size_source, header.modality) == (full.pixel_size_source, full.modality)
    from lightmycells.train.data import pixel_size_yx
    assert pixel_size_yx(path) == pytest.approx((0.25, 0.25))
    (tmp_path / "junk.tiff").write_bytes(b"not a tiff")
    with pytest.raises(ome.ImageError, match="not a readable TIFF"):
        ome.read_meta(tmp_path / "junk.tiff")
