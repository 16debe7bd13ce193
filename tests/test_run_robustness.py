"""Runs that go wrong around the images: broken models, killed containers, untrustworthy resumes.

Killed runs are real ``python inference.py`` processes signalled while they work, as
``docker stop`` (SIGTERM) and the OOM killer or ``docker kill`` (SIGKILL) would.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import inference
from lightmycells.io import atomic, ome
from lightmycells.run import record
from lightmycells.vocab import ORGANELLES, Organelle
from tests import onnx_models

REPO = Path(__file__).resolve().parents[1]


def make_input(path, modality="BF", shape=(40, 52), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = (np.random.default_rng(seed).random(shape) * 4000 + 100).astype(np.uint16)
    ome.write(path, image, channel=modality, pixel_size_um=(0.1, 0.1))
    return image


def outputs_of(out, key):
    return {o: out / "images" / o.output_folder / key for o in ORGANELLES}


def run(args):
    return inference.main([str(a) for a in args], {})


def tree(folder):
    """Every file under ``folder`` with its size and mtime (hidden ones included)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(folder).rglob("*") if p.is_file()}


def temporaries(folder):
    return [p for p in Path(folder).rglob(f"*{atomic.TMP_MARKER}")]


# --- models fail before the first image -----------------------------------------------------

def corrupt(weights, file):
    """Overwrite a model with garbage and make the manifest's sha256 match it again."""
    (weights / file).write_bytes(b"\x08\x07garbage, not an ONNX graph")
    doc = json.loads((weights / "manifest.json").read_text())
    for entry in doc["models"]:
        if entry["file"] == file:
            entry["sha256"] = onnx_models.sha256(weights / file)
    (weights / "manifest.json").write_text(json.dumps(doc))


def test_a_model_that_does_not_load_stops_the_run_with_one_line(tmp_path, capfd):
    for i in range(3):
        make_input(tmp_path / f"in/im{i}_BF.tiff", seed=i)
    weights = onnx_models.write_weights(tmp_path / "weights", onnx_models.conv_model(4))
    corrupt(weights, "all.onnx")
    inputs_before = tree(tmp_path / "in")
    out = tmp_path / "out"
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", weights,
                "--device", "cpu"]) == 2
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert str(weights / "all.onnx") in lines[0] and "cannot load the model" in lines[0]
    assert not out.exists() and captured.out == ""  # no output, no per-image line
    assert tree(tmp_path / "in") == inputs_before


def test_every_route_is_tested_even_one_only_another_modality_takes(tmp_path, capfd):
    make_input(tmp_path / "in/a_DIC.tiff", "DIC")  # DIC takes nuc-mito-any, not nuc-bf-pc
    weights = onnx_models.write_routed_weights(tmp_path / "weights")
    corrupt(weights, "nuc-bf-pc.onnx")
    args = ["--input", tmp_path / "in", "--weights", weights, "--device", "cpu"]
    # a file states its modality only once read, so a BF/PC route may be needed
    assert run([*args, "--output", tmp_path / "o1", "--organelles", "nucleus"]) == 2
    assert "nuc-bf-pc.onnx" in capfd.readouterr().err
    # a model no requested organelle routes to is not loaded at all
    assert run([*args, "--output", tmp_path / "o2", "--organelles", "actin"]) == 0


# --- killed runs -----------------------------------------------------------------------------

def start(inputs, out, weights, *extra):
    return subprocess.Popen(
        [sys.executable, "inference.py", "--input", str(inputs), "--output", str(out),
         "--weights", str(weights), "--device", "cpu", "--threads", "1", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def signal_at_first_temporary(proc, out, signum, timeout=120.0):
    """Send ``signum`` as soon as a temporary file shows up under ``out/images``.

    Returns whether one was seen (False: the run ended or timed out before any).
    """
    folders = [out / "images" / o.output_folder for o in ORGANELLES]
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        for folder in folders:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            if any(n.endswith(atomic.TMP_MARKER) for n in names):
                proc.send_signal(signum)
                return True
    return False


@pytest.fixture
def big_inputs(tmp_path):
    """Six 1536² images: each output write (9 MB) lasts long enough to be caught mid-way."""
    for i in range(6):
        make_input(tmp_path / f"in/im{i}_BF.tiff", shape=(1536, 1536), seed=i)
    return tmp_path / "in"


def assert_all_or_none(out, n):
    complete = 0
    for i in range(n):
        present = [p.is_file() for p in outputs_of(out, f"im{i}_BF.tiff").values()]
        assert all(present) or not any(present), f"im{i}: outputs {present}"
        complete += all(present)
    return complete


def test_sigterm_rolls_back_the_current_image_and_exits_143(tmp_path, big_inputs,
                                                           conv_weights):
    out = tmp_path / "out"
    proc = start(big_inputs, out, conv_weights)
    assert signal_at_first_temporary(proc, out, signal.SIGTERM), "no write was caught"
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    stopped = [line for line in stderr.splitlines() if "SIGTERM" in line]
    assert len(stopped) == 1 and "rolled back" in stopped[0], stderr
    complete = assert_all_or_none(out, 6)
    assert complete < 6 and not temporaries(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["terminated"] is True and summary["written"] == complete
    # what was finished before the signal is kept by --resume
    proc = start(big_inputs, out, conv_weights, "--resume")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.count("skipped im") == complete and assert_all_or_none(out, 6) == 6


def test_a_sigkilled_run_leaves_temporaries_the_next_run_removes(tmp_path, big_inputs,
                                                                 conv_weights):
    reference = tmp_path / "reference"
    assert run(["--input", big_inputs, "--output", reference, "--weights", conv_weights,
                "--device", "cpu", "--organelles", "nucleus"]) == 0
    out = tmp_path / "out"
    left = []
    for _ in range(4):  # a kill may land just after a rename; then try again
        proc = start(big_inputs, out, conv_weights, "--resume")
        caught = signal_at_first_temporary(proc, out, signal.SIGKILL)
        proc.communicate(timeout=120)
        left = temporaries(out)
        if caught and left:
            break
    assert left, "no SIGKILL landed mid-write"
    proc = start(big_inputs, out, conv_weights, "--resume")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"removed {len(left)} temporary file(s)" in stdout
    assert not temporaries(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["written"] + summary["skipped"] == 6 and summary["failed"] == 0
    assert assert_all_or_none(out, 6) == 6
    for i in range(6):
        key = f"im{i}_BF.tiff"
        got, _ = ome.read(outputs_of(out, key)[Organelle.NUCLEUS])
        expected, _ = ome.read(outputs_of(reference, key)[Organelle.NUCLEUS])
        np.testing.assert_array_equal(got, expected)


def test_leftovers_of_other_shards_are_not_touched(tmp_path, identity_weights):
    for i in range(4):
        make_input(tmp_path / f"in/im{i}_BF.tiff", seed=i)
    out = tmp_path / "out"
    folder = out / "images" / Organelle.ACTIN.output_folder
    folder.mkdir(parents=True)
    mine = atomic.temporary_name(folder / "im0_BF.tiff")  # shard 0/2 takes im0 and im2
    theirs = atomic.temporary_name(folder / "im1_BF.tiff")
    mine.write_bytes(b"partial")
    theirs.write_bytes(b"being written by shard 1 right now")
    assert run(["--input", tmp_path / "in", "--output", out, "--weights", identity_weights,
                "--device", "cpu", "--shard", "0/2"]) == 0
    assert not mine.exists() and theirs.exists()


# --- resume ----------------------------------------------------------------------------------

@pytest.fixture
def resumable(tmp_path, identity_weights):
    """Two inputs run once; returns (base arguments, output folder)."""
    for i in range(2):
        make_input(tmp_path / f"in/im{i}_BF.tiff", seed=i)
    out = tmp_path / "out"
    args = ["--input", tmp_path / "in", "--output", out, "--weights", identity_weights,
            "--device", "cpu"]
    assert run(args) == 0
    return args, out


def resumed(args, capsys, *extra):
    capsys.readouterr()
    assert run([*args, "--resume", *extra]) == 0
    return capsys.readouterr().out


def test_resume_skips_an_unchanged_output_set(resumable, capsys):
    args, out = resumable
    before = tree(out / "images")
    log = resumed(args, capsys)
    assert log.count("skipped im") == 2 and "written" not in log.replace("0 written", "")
    assert tree(out / "images") == before


def test_resume_redoes_outputs_of_other_weights(resumable, capsys, tmp_path):
    args, out = resumable
    weights = Path(args[args.index("--weights") + 1])
    onnx_models.write_weights(weights, onnx_models.affine_model([2] * 4, [1] * 4))
    log = resumed(args, capsys)
    assert log.count("redone: weights changed (manifest sha256") == 2
    image, _ = ome.read(tmp_path / "in/im0_BF.tiff")
    got, _ = ome.read(outputs_of(out, "im0_BF.tiff")[Organelle.TUBULIN])
    from lightmycells.engine.normalize import Percentile
    np.testing.assert_allclose(got, 2 * Percentile().before(image)[0] + 1, atol=1e-3)


def test_resume_redoes_outputs_of_an_earlier_engine_revision(resumable, capsys):
    """A record without the revision (written before it existed, by revision 1) or with
    another one is redone: the engine's own arithmetic changed the outputs."""
    import json
    args, out = resumable
    for name, revision in [("im0_BF.tiff.json", None), ("im1_BF.tiff.json", 1)]:
        path = out / record.RECORD_FOLDER / name
        doc = json.loads(path.read_text())
        doc["settings"].pop("engine_revision")
        if revision is not None:
            doc["settings"]["engine_revision"] = revision
        path.write_text(json.dumps(doc))
    log = resumed(args, capsys)
    assert log.count("redone: made by another engine revision (1 -> 2") == 2
    assert resumed(args, capsys).count("skipped im") == 2


def test_resume_redoes_outputs_made_without_tta(resumable, capsys):
    args, _ = resumable
    log = resumed(args, capsys, "--tta")
    assert log.count("redone: settings changed: tta False -> True") == 2
    assert resumed(args, capsys, "--tta").count("skipped im") == 2


def test_resume_redoes_an_input_that_changed(resumable, capsys, tmp_path):
    args, _ = resumable
    source = tmp_path / "in/im1_BF.tiff"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # `touch`
    log = resumed(args, capsys)
    assert "skipped im0_BF.tiff" in log and "redone: input changed" in log
    assert log.count("written im1_BF.tiff") == 1


def test_resume_redoes_outputs_without_a_record(resumable, capsys):
    args, out = resumable
    (out / record.RECORD_FOLDER / "im0_BF.tiff.json").unlink()  # as an older version wrote
    log = resumed(args, capsys)
    assert "written im0_BF.tiff  redone: no record" in log and "skipped im1_BF.tiff" in log
    assert (out / record.RECORD_FOLDER / "im0_BF.tiff.json").is_file()


def test_resume_redoes_cut_short_or_missing_outputs(resumable, capsys):
    args, out = resumable
    broken = outputs_of(out, "im1_BF.tiff")[Organelle.TUBULIN]
    broken.write_bytes(broken.read_bytes()[:200])  # as if replaced by a file cut short
    outputs_of(out, "im0_BF.tiff")[Organelle.ACTIN].unlink()
    log = resumed(args, capsys)
    assert "written im0_BF.tiff  redone: output actin is missing" in log
    assert "written im1_BF.tiff  redone: output tubulin is not the recorded file" in log
    assert ome.read(broken)[0].shape == (40, 52)
