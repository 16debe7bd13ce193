"""The command line: input discovery, output naming, sharding, summary, exit codes (resume and
killed runs: tests/test_run_robustness.py).

End-to-end tests run ``inference.main`` in-process with real tiny ONNX models
(``tests/onnx_models.py``) through the real engine; one test runs ``inference.py`` as a
subprocess, as Docker would.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import inference
from lightmycells.engine.normalize import Percentile
from lightmycells.io import ome
from lightmycells.io.inputs import discover
from lightmycells.run import cli
from lightmycells.run import shard as sharding
from lightmycells.vocab import INPUT_FOLDER, ORGANELLES, Organelle
from tests import onnx_models

REPO = Path(__file__).resolve().parents[1]


def make_input(path, modality="BF", shape=(40, 52), seed=0, pixel_size=(0.1, 0.12)):
    """A real transmitted-light OME-TIFF with a known modality and pixel size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = (np.random.default_rng(seed).random(shape) * 4000 + 100).astype(np.uint16)
    ome.write(path, image, channel=modality, pixel_size_um=pixel_size)
    return image


def gc_input(root, name, **kwargs):
    return make_input(root / "images" / INPUT_FOLDER / f"{name}.tiff", **kwargs)


def outputs_of(out, key):
    return {o: out / "images" / o.output_folder / key for o in ORGANELLES}


def run(args, env=None):
    return inference.main([str(a) for a in args], {} if env is None else env)


def normalized(image):
    return Percentile().before(image)[0]


# --- discovery and output names -------------------------------------------------------------

def test_discover_grand_challenge_layout(tmp_path):
    gc_input(tmp_path, "b", modality="PC")
    gc_input(tmp_path, "a")
    (tmp_path / "images" / INPUT_FOLDER / "notes.txt").write_text("not an image")
    found = discover(tmp_path)
    assert found.layout == "grand-challenge"
    assert [j.key for j in found.jobs] == [Path("a.tiff"), Path("b.tiff")]
    assert found.jobs[0].output(Path("/o"), Organelle.ACTIN) == Path(
        "/o/images/actin-fluorescence-ome-tiff/a.tiff")


def test_discover_folder_recursively_keeps_subfolders_and_skips_targets(tmp_path):
    make_input(tmp_path / "Study_1" / "image_1_BF_z0.ome.tiff")
    make_input(tmp_path / "Study_2" / "image_1_BF_z0.ome.tiff")
    make_input(tmp_path / "Study_2" / "deep" / "x.TIF")
    make_input(tmp_path / "Study_1" / "image_1_Nucleus.ome.tiff", modality="nucleus")
    make_input(tmp_path / "Study_1" / ".hidden.tiff")
    make_input(tmp_path / ".cache" / "y.tiff")
    found = discover(tmp_path)
    assert found.layout == "folder"
    assert [j.key.as_posix() for j in found.jobs] == [
        "Study_1/image_1_BF_z0.tiff", "Study_2/deep/x.tiff", "Study_2/image_1_BF_z0.tiff"]
    assert found.skipped_targets == 1 and not found.collisions


def test_inputs_writing_the_same_output_are_both_reported(tmp_path):
    make_input(tmp_path / "a.tif")
    make_input(tmp_path / "a.ome.tiff")
    make_input(tmp_path / "b.tiff")
    found = discover(tmp_path)
    assert [j.source.name for j in found.jobs] == ["b.tiff"]
    problems = dict(found.collisions)
    assert set(problems) == {tmp_path / "a.tif", tmp_path / "a.ome.tiff"}
    assert "same output a.tiff as a.ome.tiff" in problems[tmp_path / "a.tif"]


@pytest.mark.parametrize("output", ["out", "."])
def test_output_folder_inside_or_equal_to_input_folder_is_not_searched(tmp_path, output):
    make_input(tmp_path / "a.tiff")
    make_input(tmp_path / output / "images" / "nucleus-fluorescence-ome-tiff" / "a.tiff")
    args = cli.build_parser(tmp_path).parse_args(
        ["--input", str(tmp_path), "--output", str(tmp_path / output)])
    found = cli.discover_inputs(cli.settings_from(args, {}))
    assert [j.source for j in found.jobs] == [tmp_path / "a.tiff"]


# --- sharding --------------------------------------------------------------------------------

def test_shards_are_disjoint_and_cover_everything():
    items = list(range(23))
    parts = [sharding.parse(f"{i}/4").select(items) for i in range(4)]
    assert sorted(sum(parts, [])) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("env,expected", [
    ({}, (0, 1)),
    ({"JOB_COMPLETION_INDEX": "3", "JOB_COMPLETIONS": "5"}, (3, 5)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"},
     (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}, (0, 2)),
])
def test_shard_from_scheduler_environment(env, expected):
    shard = sharding.from_environment(env)
    assert (shard.index, shard.count) == expected


@pytest.mark.parametrize("text,message", [
    ("3", "expects I/N"), ("4/4", "out of range"), ("1/0", "out of range")])
def test_bad_shard_argument(text, message):
    with pytest.raises(ValueError, match=message):
        sharding.parse(text)


def test_index_without_count_is_a_configuration_error(tmp_path, capsys):
    code = run(["--input", tmp_path, "--output", tmp_path / "o"], {"JOB_COMPLETION_INDEX": "1"})
    assert code == 2
    assert "JOB_COMPLETIONS is not" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- settings --------------------------------------------------------------------------------

def test_grand_challenge_mode_defaults(tmp_path):
    args = cli.build_parser(tmp_path).parse_args([])
    settings = cli.settings_from(args, {})
    assert (settings.input, settings.output) == (Path("/input"), Path("/output"))
    assert settings.grand_challenge and settings.summary is None
    assert settings.organelles == ORGANELLES


def test_batch_mode_writes_summary_into_output(tmp_path):
    args = cli.build_parser(tmp_path).parse_args(
        ["--input", "i", "--output", "o", "--organelles", "actin, nucleus"])
    settings = cli.settings_from(args, {})
    assert settings.summary == Path("o/summary.json")
    assert settings.organelles == (Organelle.ACTIN, Organelle.NUCLEUS)


@pytest.mark.parametrize("argv,message", [
    (["--input", "x"], "--input and --output go together"),
    (["--input", "x", "--output", "y", "--organelles", "golgi"], "unknown organelle 'golgi'"),
    (["--input", "x", "--output", "y", "--shard", "2/2"], "out of range"),
])
def test_bad_usage_exits_2_naming_the_problem(tmp_path, capsys, argv, message):
    assert run(argv) == 2
    assert message in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        run(["--batch-size", "0"])
    assert stop.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


# --- end to end through the real engine ------------------------------------------------------

def test_batch_run_writes_four_valid_outputs_per_input(tmp_path, identity_weights, capsys):
    images = {
        "Study_1/image_1_BF_z0": make_input(tmp_path / "in/Study_1/image_1_BF_z0.ome.tiff"),
        "image_2_PC_z1": make_input(tmp_path / "in/image_2_PC_z1.ome.tiff", "PC", (33, 71), 1),
    }
    out = tmp_path / "out"
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", identity_weights,
                "--device", "cpu"]) == 0
    for key, image in images.items():
        for organelle, path in outputs_of(out, key + ".tiff").items():
            prediction, meta = ome.read(path)
            assert prediction.dtype == np.float32 and prediction.shape == image.shape
            assert meta.pixel_size_um == pytest.approx((0.1, 0.12))
            with tifffile.TiffFile(path) as tif:
                assert organelle.value in tif.ome_metadata
            # the identity model returns the normalised input at every pixel
            np.testing.assert_allclose(prediction, normalized(image), atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["total"], summary["written"], summary["failed"]) == (2, 2, 0)
    assert summary["device"] == "cpu" and summary["images_per_minute"] > 0
    log = capsys.readouterr().out
    assert ("written image_2_PC_z1.ome.tiff  PC (Channel@Name)  33x71 0.12 µm "
            "(OME PhysicalSize)") in log
    assert "written Study_1/image_1_BF_z0.ome.tiff  BF (Channel@Name)  40x52" in log
    assert "nucleus,mitochondria,tubulin,actin<-all" in log and "done: 2 written" in log


def test_grand_challenge_mode_writes_only_the_outputs(tmp_path, identity_weights, monkeypatch):
    monkeypatch.setattr(cli, "GC_INPUT", tmp_path / "input")
    monkeypatch.setattr(cli, "GC_OUTPUT", tmp_path / "output")
    image = gc_input(tmp_path / "input", "3f2a-uuid", modality="DIC", shape=(37, 29))
    assert run(["--weights", identity_weights, "--device", "cpu"]) == 0
    written = sorted(p.relative_to(tmp_path / "output").as_posix()
                     for p in (tmp_path / "output").rglob("*") if p.is_file())
    assert written == sorted(f"images/{o.output_folder}/3f2a-uuid.tiff" for o in ORGANELLES)
    prediction, _ = ome.read(outputs_of(tmp_path / "output", "3f2a-uuid.tiff")[Organelle.ACTIN])
    assert prediction.shape == image.shape
    # what Grand Challenge does next: import each output with panimg
    from panimg import convert
    from panimg.image_builders import image_builder_tiff

    outputs = sorted(p.resolve() for p in (tmp_path / "output").rglob("*.tiff"))
    result = convert(input_directory=tmp_path / "output", output_directory=tmp_path / "gc",
                     builders=[image_builder_tiff], post_processors=[])
    assert sorted(result.consumed_files) == outputs
    assert {(i.width, i.height) for i in result.new_images} == {(29, 37)}
    with tifffile.TiffFile(outputs[0]) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.NONE  # see process.py


def test_organelle_subset_and_routes(tmp_path, routed_weights):
    bf = make_input(tmp_path / "in/a_BF.tiff", "BF")
    dic = make_input(tmp_path / "in/b_DIC.tiff", "DIC", seed=3)
    out = tmp_path / "out"
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", routed_weights,
                "--organelles", "nucleus,actin", "--device", "cpu"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "actin-fluorescence-ome-tiff", "nucleus-fluorescence-ome-tiff"]
    # the affine test models reveal the route: nucleus/BF -> 1x+10, nucleus/DIC -> 2x+20
    for name, image, scale, offset in (("a_BF", bf, 1, 10), ("b_DIC", dic, 2, 20)):
        nucleus, _ = ome.read(outputs_of(out, name + ".tiff")[Organelle.NUCLEUS])
        np.testing.assert_allclose(nucleus, scale * normalized(image) + offset, atol=1e-3)
        actin, _ = ome.read(outputs_of(out, name + ".tiff")[Organelle.ACTIN])
        np.testing.assert_allclose(actin, 5 * normalized(image) + 50, atol=1e-3)


def test_shards_from_a_kubernetes_indexed_job_split_the_inputs(tmp_path, identity_weights):
    for i in range(5):
        make_input(tmp_path / f"in/im{i}_PC.tiff", "PC", (20, 20), seed=i)
    done = []
    for index in range(2):
        out = tmp_path / f"out{index}"
        env = {"JOB_COMPLETION_INDEX": str(index), "JOB_COMPLETIONS": "2"}
        assert run(["--input", tmp_path / "in", "--output", out, "--weights", identity_weights,
                    "--device", "cpu", "--organelles", "nucleus"], env) == 0
        names = [p.name for p in (out / "images/nucleus-fluorescence-ome-tiff").iterdir()]
        summary = out / f"summary.shard-{index}-of-2.json"
        assert json.loads(summary.read_text())["shard"] == f"{index}/2"
        done.append(set(names))
    assert done[0].isdisjoint(done[1])
    assert done[0] | done[1] == {f"im{i}_PC.tiff" for i in range(5)}


def test_zstack_modes(tmp_path, identity_weights):
    stack = (np.random.default_rng(0).random((3, 24, 32)) * 1000).astype(np.uint16)
    stack[1] = np.tile([0, 3000], (24, 16))  # plane 1: by far the sharpest
    (tmp_path / "in").mkdir()
    ome.write(tmp_path / "in" / "s_BF.ome.tiff", stack, channel="BF", pixel_size_um=(0.1, 0.1))
    base = ["--input", tmp_path / "in", "--weights", identity_weights, "--device", "cpu",
            "--organelles", "nucleus"]
    assert run([*base, "--output", tmp_path / "all", "--zstack", "all"]) == 0
    planes, meta = ome.read(outputs_of(tmp_path / "all", "s_BF.tiff")[Organelle.NUCLEUS])
    assert planes.shape == (3, 24, 32) and meta.axes == "ZYX"
    np.testing.assert_allclose(planes[2], normalized(stack[2]), atol=1e-4)
    assert run([*base, "--output", tmp_path / "best"]) == 0
    best, _ = ome.read(outputs_of(tmp_path / "best", "s_BF.tiff")[Organelle.NUCLEUS])
    np.testing.assert_allclose(best, normalized(stack[1]), atol=1e-4)


def test_check_prints_the_routing_table(tmp_path, identity_weights, capsys):
    assert run(["--check", "--weights", identity_weights]) == 0
    table = capsys.readouterr().out
    assert table.count("all") == 12
    partial = onnx_models.write_manifest(tmp_path / "partial", [onnx_models.model_entry(
        tmp_path / "partial", "bf", onnx_models.identity_model(4), modalities=["BF"])])
    assert run(["--check", "--weights", partial]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("MISSING") == 8
    assert "8 missing route(s): nucleus/PC" in captured.err


def test_entry_point_as_a_process_imports_onnxruntime_only_for_valid_arguments(
        tmp_path, identity_weights):
    make_input(tmp_path / "in" / "a_BF.tiff", shape=(20, 24))
    code = ("import sys, inference; "
            "rc = inference.main(sys.argv[1:], {}); "
            "print('ORT' if 'onnxruntime' in sys.modules else 'NO-ORT'); sys.exit(rc)")
    base = [sys.executable, "-c", code, "--weights", str(identity_weights), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run([*base, "--input", str(tmp_path / "missing"), "--output",
                          str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=REPO)
    assert (bad.returncode, bad.stdout.strip()) == (2, "NO-ORT")
    assert "input folder" in bad.stderr and "does not exist" in bad.stderr
    good = subprocess.run([sys.executable, "inference.py", "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "o"), "--weights", str(identity_weights),
                           "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
    assert good.returncode == 0, good.stderr
    assert len(list((tmp_path / "o" / "images").rglob("a_BF.tiff"))) == 4


def test_a_failed_write_fails_only_its_input(tmp_path, identity_weights, capsys):
    for study in (1, 2, 3):
        make_input(tmp_path / f"in/Study_{study}/image_{study}_BF_z0.ome.tiff", seed=study)
    out = tmp_path / "out"
    blocker = out / "images" / Organelle.TUBULIN.output_folder / "Study_2"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the Study_2 folder must go")
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", identity_weights,
                "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "image_2_BF_z0.ome.tiff: " in err
    for study in (1, 3):
        assert all(p.is_file() for p in outputs_of(out, f"Study_{study}/image_{study}_BF_z0.tiff")
                   .values())
    assert not list(out.rglob("image_2_BF_z0.tiff"))  # nothing half-written for Study_2


def test_engine_options_are_accepted_and_recorded(tmp_path, identity_weights):
    # Whether each option changes what the engine computes: tests/test_engine_options.py.
    make_input(tmp_path / "in" / "a_BF.tiff", shape=(45, 61))
    out = tmp_path / "out"
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", identity_weights,
                "--device", "cpu", "--tta", "--overlap", "0.5", "--batch-size", "2",
                "--threads", "1", "--no-resample", "--summary", tmp_path / "s.json"]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["tta"] is True and summary["written"] == 1
    assert not (out / "summary.json").exists()
