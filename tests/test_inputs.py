"""Inputs users have (issue 14, defect 5): modality words as microscopes write them, pixel
types beyond uint8/uint16/float32, files with several series, unreadable entries in the input
folder, and tifffile's own warnings folded into the file's one line.

Every image is a real TIFF written by tifffile; runs go through ``inference.main`` (or
``inference.py`` in a subprocess where stderr itself is the thing checked) with tiny real
ONNX models.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import inference
from lightmycells.io import ome
from lightmycells.io.inputs import discover
from lightmycells.vocab import Modality, ModalityError, parse_modality

REPO = Path(__file__).resolve().parents[1]
#: (word as a microscope or a user writes it, the modality it names), from issue 14 and OME's
#: ContrastMethod enumeration (Brightfield, Phase, DIC).
WORDS = [
    ("Brightfield", "BF"), ("Bright Field", "BF"), ("bright-field", "BF"), ("BF", "BF"),
    ("bf", "BF"), ("BRIGHTFIELD", "BF"),
    ("Phase", "PC"), ("Phase Contrast", "PC"), ("PhaseContrast", "PC"), ("phase_contrast", "PC"),
    ("Ph1", "PC"), ("Ph2", "PC"), ("Ph3", "PC"), ("ph3", "PC"), ("PC", "PC"),
    ("Nomarski", "DIC"), ("DIC", "DIC"), ("dic", "DIC"),
    ("Differential Interference Contrast", "DIC"), ("differential interference contrast", "DIC"),
]
OME_UNMODELLED = ["HoffmanModulation", "ObliqueIllumination", "PolarizedLight", "Darkfield",
                  "Fluorescence"]


def run(*args):
    return inference.main([str(a) for a in args], {})


def plain(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


def ome_tiff(path, channel, array=None):
    """A uint16 OME-TIFF whose first channel carries the attributes in ``channel``."""
    array = np.ones((24, 32), np.uint16) if array is None else array
    return plain(path, array, ome=True, metadata={"Channel": channel})


def lines_about(text, name):
    return [line for line in text.splitlines() if name in line]


# --- modality words ---------------------------------------------------------------------------

@pytest.mark.parametrize("word,expected", WORDS)
def test_parse_modality_takes_microscope_words(word, expected):
    assert parse_modality(word) is Modality(expected)


@pytest.mark.parametrize("word,message", [
    ("SEM", "unknown modality 'SEM'"), ("Other", "unknown modality 'Other'"),
    ("Brightfield2", "unknown modality 'Brightfield2'"),
    *[(w, f"contrast method {w} has no model") for w in OME_UNMODELLED],
    ("dark field", "contrast method Darkfield has no model"),
])
def test_parse_modality_refuses_other_words_saying_what_it_takes(word, message):
    with pytest.raises(ModalityError, match=message) as error:
        parse_modality(word)
    assert "(expected one of BF/Brightfield" in str(error.value)


@pytest.mark.parametrize("attribute", ["Name", "ContrastMethod"])
@pytest.mark.parametrize("word,expected", [("Ph3", "PC"), ("Bright Field", "BF"),
                                           ("Phase Contrast", "PC"), ("Nomarski", "DIC"),
                                           ("Brightfield", "BF"), ("Phase", "PC")])
def test_reader_takes_microscope_words_from_the_ome_channel(tmp_path, attribute, word, expected):
    _, meta = ome.read(ome_tiff(tmp_path / "x.ome.tiff", {attribute: word}))
    assert (meta.modality, meta.modality_source) == (Modality(expected), f"Channel@{attribute}")


@pytest.mark.parametrize("contrast", OME_UNMODELLED)
def test_unmodelled_contrast_method_is_no_modality_and_says_so(tmp_path, contrast):
    # the file name says BF, IlluminationType says transmitted: the contrast method outranks both
    path = ome_tiff(tmp_path / "image_1_BF_z0.ome.tiff",
                    {"ContrastMethod": contrast, "IlluminationType": "Transmitted"})
    _, meta = ome.read(path)
    assert meta.modality is None
    assert meta.modality_source == f"Channel@ContrastMethod {contrast}, which no model handles"
    _, stated = ome.read(path, modality=Modality.DIC)
    assert stated.modality is Modality.DIC
    assert stated.modality_source == f"stated, over {meta.modality_source}"


def test_cli_modality_takes_microscope_words(tmp_path, identity_weights, capsys):
    plain(tmp_path / "in" / "mystery.tiff", np.ones((24, 24), np.uint16))
    code = run("--input", tmp_path / "in", "--output", tmp_path / "out", "--weights",
               identity_weights, "--device", "cpu", "--modality", "Phase Contrast")
    assert code == 0
    (line,) = lines_about(capsys.readouterr().out, "mystery.tiff")
    assert "written mystery.tiff  PC (stated)" in line


@pytest.mark.parametrize("word,message", [("Darkfield", "contrast method Darkfield has no model"),
                                          ("Brightfeld", "unknown modality 'Brightfeld'")])
def test_cli_refuses_other_modality_words(tmp_path, identity_weights, capsys, word, message):
    with pytest.raises(SystemExit) as stop:
        run("--input", tmp_path, "--output", tmp_path / "out", "--modality", word)
    assert stop.value.code == 2
    assert f"argument --modality: {message}" in capsys.readouterr().err


def test_darkfield_without_wildcard_route_names_the_contrast_method(tmp_path, capsys):
    from tests import onnx_models

    weights = onnx_models.write_manifest(tmp_path / "w", [onnx_models.model_entry(
        tmp_path / "w", "explicit", onnx_models.identity_model(4), modalities=["BF", "PC"])])
    ome_tiff(tmp_path / "in" / "dark.ome.tiff", {"ContrastMethod": "Darkfield"})
    assert run("--input", tmp_path / "in", "--output", tmp_path / "out", "--weights", weights,
               "--device", "cpu") == 1
    (line,) = lines_about(capsys.readouterr().err, "dark.ome.tiff")
    assert ("unknown modality (Channel@ContrastMethod Darkfield, which no model handles) and "
            "the manifest has no '*' route") in line


# --- pixel types ------------------------------------------------------------------------------

VALUES = np.arange(24 * 32).reshape(24, 32) % 1000  # exact in every type below


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint32", "int64", "float16",
                                   "float64"])
def test_other_numeric_pixel_types_read_as_float32_with_their_values(tmp_path, dtype):
    values = VALUES % 100 - 50 if dtype == "int8" else VALUES - 300 * (dtype[0] == "i")
    path = plain(tmp_path / f"{dtype}_BF.tif", values.astype(dtype))
    image, meta = ome.read(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, values.astype(np.float64))
    assert meta.notes == (f"{dtype} read as float32",)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_native_pixel_types_stay_as_stored(tmp_path, dtype):
    image, meta = ome.read(plain(tmp_path / "n.tif", (VALUES % 200).astype(dtype)))
    assert image.dtype == np.dtype(dtype) and meta.notes == ()


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "bool"])
def test_complex_and_bool_pixels_are_refused(tmp_path, dtype):
    with pytest.raises(ome.ImageError, match=f"^unsupported pixel type {dtype} "):
        ome.read(plain(tmp_path / "c.tif", np.zeros((24, 32), dtype)))


def test_float64_beyond_float32_range_is_refused(tmp_path):
    array = np.ones((24, 32))
    array[0, 0] = 1e300
    with pytest.raises(ome.ImageError, match="float64 pixels beyond float32's range"):
        ome.read(plain(tmp_path / "f.tif", array))


def test_converted_types_give_the_outputs_of_the_same_values_in_uint16(tmp_path, conv_weights,
                                                                       capsys):
    folder = tmp_path / "in"
    for dtype in ("uint16", "int16", "int32", "uint32", "float16", "float64"):
        plain(folder / f"{dtype}_BF.tif", (VALUES + 7).astype(dtype))
    out = tmp_path / "out"
    assert run("--input", folder, "--output", out, "--weights", conv_weights,
               "--device", "cpu") == 0
    assert "int16 read as float32" in lines_about(capsys.readouterr().out, "int16_BF.tif")[0]
    for organelle_folder in (out / "images").iterdir():
        reference = tifffile.imread(organelle_folder / "uint16_BF.tiff")
        assert reference.std() > 0
        for path in organelle_folder.glob("*.tiff"):
            np.testing.assert_array_equal(tifffile.imread(path), reference, err_msg=str(path))


# --- several series ---------------------------------------------------------------------------

def test_file_with_several_series_reads_series_0_and_says_so(tmp_path, identity_weights, capsys):
    path = tmp_path / "in" / "multi.ome.tiff"
    path.parent.mkdir()
    first = (VALUES + 1).astype(np.uint16)
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(first, metadata={"Channel": {"Name": "PC"}})
        tif.write(np.zeros((40, 40), np.uint16), metadata={"Channel": {"Name": "BF"}})
        tif.write(np.zeros((8, 8), np.uint16), metadata={"Channel": {"Name": "BF"}})
    image, meta = ome.read(path)
    np.testing.assert_array_equal(image, first)
    assert (meta.modality, meta.notes) == (Modality.PC, ("series 0 of 3",))
    assert run("--input", tmp_path / "in", "--output", tmp_path / "out", "--weights",
               identity_weights, "--device", "cpu") == 0
    (line,) = lines_about(capsys.readouterr().out, "multi.ome.tiff")
    assert "[series 0 of 3]" in line and " 24x32 " in line


# --- entries of the input folder that cannot be inputs ----------------------------------------

def test_dangling_link_and_folder_named_tiff_are_named_not_skipped(tmp_path):
    ome_tiff(tmp_path / "good_BF.tiff", {"Name": "BF"})
    (tmp_path / "gone.tiff").symlink_to(tmp_path / "deleted.tiff")
    (tmp_path / "stack.tif").mkdir()
    ome_tiff(tmp_path / "stack.tif" / "inner_BF.tiff", {"Name": "BF"})  # still an input
    (tmp_path / "notes.txt").symlink_to(tmp_path / "nowhere.txt")  # not an input name: ignored
    found = discover(tmp_path)
    assert [j.source.name for j in found.jobs] == ["good_BF.tiff", "inner_BF.tiff"]
    assert found.unreadable == [
        (tmp_path / "gone.tiff",
         f"dangling link (to {tmp_path / 'deleted.tiff'}, which does not exist)"),
        (tmp_path / "stack.tif", "is a folder, not an image file"),
    ]


def test_unreadable_entries_count_as_failed_in_the_summary(tmp_path, identity_weights, capsys):
    folder = tmp_path / "in"
    ome_tiff(folder / "good_BF.tiff", {"Name": "BF"})
    (folder / "gone_BF.tiff").symlink_to(folder / "deleted.tiff")
    out = tmp_path / "out"
    assert run("--input", folder, "--output", out, "--weights", identity_weights,
               "--device", "cpu") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"FAILED {folder / 'gone_BF.tiff'}: dangling link" in err[0]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["found"], summary["written"], summary["failed"]) == (2, 1, 1)


_DISCOVER = ("import json, sys; from pathlib import Path; from lightmycells.io.inputs import "
             "discover; d = discover(Path(sys.argv[1])); print(json.dumps({'jobs': "
             "[j.source.name for j in d.jobs], 'unreadable': [[p.name, m] for p, m in "
             "d.unreadable]}))")


def _discover_without_privileges(folder: Path) -> dict:
    """``discover(folder)`` in a process that file permissions apply to.

    Root passes every permission check through two capabilities; the subprocess runs
    without them (as root still, so it can reach the interpreter and the packages).
    """
    command = [sys.executable, "-c", _DISCOVER, str(folder)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_file_and_folder_without_read_permission_are_named(tmp_path):
    ome_tiff(tmp_path / "good_BF.tiff", {"Name": "BF"})
    ome_tiff(tmp_path / "secret_BF.tiff", {"Name": "BF"}).chmod(0o000)
    (tmp_path / "locked").mkdir()
    ome_tiff(tmp_path / "locked" / "inside_BF.tiff", {"Name": "BF"})
    (tmp_path / "locked").chmod(0o000)
    try:
        found = _discover_without_privileges(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)  # so that pytest can clean up
    assert found == {"jobs": ["good_BF.tiff"], "unreadable": [
        ["locked", "folder cannot be searched (Permission denied); any images in it were not "
                   "processed"],
        ["secret_BF.tiff", "cannot be read (permission denied)"],
    ]}


# --- a library's own warnings -----------------------------------------------------------------

def cut_ome_tiff(path):
    """An uncompressed OME-TIFF cut in half: tifffile logs a tag error, then fails to read it."""
    ome.write(path, np.ones((300, 300), np.float32), channel="BF", pixel_size_um=(0.1, 0.1),
              compression=None)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def odd_ome_tiff(path):
    """OME-XML that promises 99 columns for a 20x20 plane: tifffile warns, then reads it."""
    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
           'Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder='
           '"XYCZT" Type="uint16" SizeX="99" SizeY="20" SizeC="1" SizeZ="1" SizeT="1">'
           '<Channel ID="Channel:0:0" Name="PC" SamplesPerPixel="1"/><TiffData IFD="0" '
           'PlaneCount="1"/></Pixels></Image></OME>')
    return plain(path, (VALUES[:20, :20] + 1).astype(np.uint16), description=xml, metadata=None)


def test_tifffile_warnings_join_the_files_own_line(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ome.ImageError) as error:
        ome.read(cut_ome_tiff(tmp_path / "cut.ome.tiff"))
    assert str(error.value).startswith("not a readable TIFF (TiffFileError: ")
    assert "; tifffile: <TiffTag.fromfile> raised TiffFileError" in str(error.value)
    image, meta = ome.read(odd_ome_tiff(tmp_path / "odd.ome.tiff"))
    assert image.shape == (20, 20) and meta.modality is Modality.PC
    assert meta.notes == ("tifffile: <tifffile.TiffFile 'odd.ome.tiff'> OME series is missing "
                          "3 frames. Missing data are zeroed",)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]


def test_one_line_per_bad_file_on_the_real_stderr(tmp_path, identity_weights):
    """As ``docker logs`` shows it: Python's own last-resort log handler is in play here."""
    folder = tmp_path / "in"
    folder.mkdir()
    cut_ome_tiff(folder / "cut.ome.tiff")
    odd_ome_tiff(folder / "odd.ome.tiff")
    result = subprocess.run(
        [sys.executable, str(REPO / "inference.py"), "--input", str(folder), "--output",
         str(tmp_path / "out"), "--weights", str(identity_weights), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stderr
    (failed,) = result.stderr.splitlines()
    assert f"FAILED {folder / 'cut.ome.tiff'}: not a readable TIFF" in failed
    assert "tifffile: <TiffTag.fromfile> raised" in failed
    (odd,) = lines_about(result.stdout, "odd.ome.tiff")
    assert "written odd.ome.tiff" in odd and "OME series is missing 3 frames" in odd
