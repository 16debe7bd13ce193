"""The pipelined batch run: the sequential run's files, local failures, bounded, stoppable."""

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import process
from lightmycells.engine.manifest import load as load_manifest
from lightmycells.io import ome
from lightmycells.io.inputs import discover
from lightmycells.run import batch, pipeline
from lightmycells.run.runlog import FAILED, WRITTEN, Outcome
from lightmycells.run.stop import Terminated
from lightmycells.vocab import ORGANELLES

SHAPE = (96, 120)


def make_inputs(folder, n, shape=SHAPE):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = (np.random.default_rng(i).random(shape) * 4000 + 100).astype(np.uint16)
        ome.write(folder / f"im{i}_BF.tiff", image, channel="BF", pixel_size_um=(0.1, 0.1))
    return folder


def processor(weights):
    proc, _ = process.build(load_manifest(weights), ORGANELLES, device="cpu", threads=1)
    return proc


def run_batch(inputs, out, proc, **kwargs):
    return batch.run(discover(inputs), proc, output=out, organelles=ORGANELLES,
                     summary_path=out / "summary.json", records={"k": 1}, **kwargs)


def without_uuid(path):
    return re.sub(rb'UUID="urn:uuid:[0-9a-f-]+"', b"", path.read_bytes())


def files(out):
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*.tiff"))}


def test_pipelined_outputs_are_the_files_of_the_sequential_run(tmp_path, conv_weights):
    inputs = make_inputs(tmp_path / "in", 5)
    proc = processor(conv_weights)
    assert run_batch(inputs, tmp_path / "seq", proc, pipelined=False) == 0
    assert run_batch(inputs, tmp_path / "pipe", proc) == 0
    seq, pipe = files(tmp_path / "seq"), files(tmp_path / "pipe")
    assert list(seq) == list(pipe) and len(seq) == 5 * len(ORGANELLES)
    for name in seq:  # byte for byte, but for the UUID tifffile gives every OME-XML
        assert without_uuid(seq[name]) == without_uuid(pipe[name]), name
        assert np.array_equal(tifffile.imread(seq[name]), tifffile.imread(pipe[name]))
    # and the model really ran: a 5×5 random convolution does not return its input
    first = tifffile.imread(pipe["images/nucleus-fluorescence-ome-tiff/im0_BF.tiff"])
    assert first.shape == SHAPE and first.std() > 0


class Spy(process.Processor):
    """The real processor, failing one input at a chosen stage, recording the order of events."""

    def __init__(self, proc, fail=None):
        super().__init__(proc.predictor, proc.manifest, proc.organelles)
        self.fail, self.events, self.lock = fail or {}, [], threading.Lock()

    def _event(self, what, source):
        with self.lock:
            self.events.append((what, Path(source).name.split("_")[0]))

    def load(self, source):
        self._event("load", source)
        if self.fail.get(Path(source).name) == "load":
            raise ome.ImageError("unreadable on purpose")
        loaded = super().load(source)
        return loaded, source

    def compute(self, loaded):
        loaded, source = loaded
        self._event("compute", source)
        if self.fail.get(Path(source).name) == "compute":
            raise RuntimeError("model fault on purpose")
        return super().compute(loaded), source

    def write(self, computed, outputs, cancel=None):
        computed, source = computed
        self._event("write", source)
        return super().write(computed, outputs, cancel)


@pytest.mark.parametrize("stage", ["load", "compute", "write"])
def test_a_failing_image_in_the_middle_leaves_its_neighbours_written(tmp_path, conv_weights,
                                                                     stage):
    inputs = make_inputs(tmp_path / "in", 5)
    out = tmp_path / "out"
    if stage == "write":  # a file where im2's tubulin folder must go: the write fails there
        blocker = out / "images/tubulin-fluorescence-ome-tiff/im2_BF.tiff"
        blocker.mkdir(parents=True)
        spy = Spy(processor(conv_weights))
    else:
        spy = Spy(processor(conv_weights), fail={"im2_BF.tiff": stage})
    logged = []
    original_add = batch.RunLog.add

    def add(self, outcome):
        logged.append(outcome)
        original_add(self, outcome)

    batch.RunLog.add = add
    try:
        assert run_batch(inputs, out, spy) == 1
    finally:
        batch.RunLog.add = original_add
    assert [o.source.name for o in logged] == [f"im{i}_BF.tiff" for i in range(5)]  # in order
    assert [o.status for o in logged] == [WRITTEN, WRITTEN, FAILED, WRITTEN, WRITTEN]
    for i in (0, 1, 3, 4):
        assert all((out / f"images/{o.output_folder}/im{i}_BF.tiff").is_file() for o in ORGANELLES)
        assert (out / f".lightmycells/im{i}_BF.tiff.json").is_file()
    written = [o for o in ORGANELLES if (out / f"images/{o.output_folder}/im2_BF.tiff").is_file()]
    assert written == [] and not (out / ".lightmycells/im2_BF.tiff.json").exists()
    # the failure line says the problem
    detail = logged[2].detail
    assert {"load": "unreadable on purpose", "compute": "model fault on purpose",
            "write": "IsADirectoryError"}[stage] in detail
    # every stage of every input ran once, each input's in order
    for i in range(5):
        mine = [what for what, name in spy.events if name == f"im{i}"]
        assert mine == {"load": ["load"], "compute": ["load", "compute"]}.get(
            stage if i == 2 else "", ["load", "compute", "write"])


class Timeline:
    """Stages that sleep, recording each image's interval from read start to write end."""

    def __init__(self, compute_s=0.05, io_s=0.02):
        self.compute_s, self.io_s = compute_s, io_s
        self.started, self.ended = {}, {}

    def load(self, source):
        self.started[source] = time.perf_counter()
        time.sleep(self.io_s)
        return source

    def compute(self, loaded):
        time.sleep(self.compute_s)
        return loaded

    def write(self, computed, outputs, cancel=None):
        time.sleep(self.io_s)
        self.ended[computed] = time.perf_counter()
        return computed

    def most_at_once(self):
        """The most intervals [read start, write end] overlapping, from the recorded times."""
        marks = sorted([(t, 1) for t in self.started.values()] +
                       [(t, -1) for t in self.ended.values()], key=lambda m: (m[0], m[1]))
        count = peak = 0
        for _, step in marks:
            count += step
            peak = max(peak, count)
        return peak


def tasks(n):
    def finish(result):
        return Outcome(result, WRITTEN)

    def fail(exc, seconds):
        return Outcome(Path("?"), FAILED, seconds, str(exc))

    return [pipeline.Task(Path(f"im{i}"), {}, finish, fail) for i in range(n)]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_in_flight_images_are_bounded_and_counted(depth):
    stages = Timeline()
    pipe = pipeline.Pipeline(stages, depth=depth)
    outcomes = []
    pipe.run(tasks(8), outcomes.append)
    assert [o.source.name for o in outcomes] == [f"im{i}" for i in range(8)]
    assert pipe.in_flight.peak == depth and pipe.in_flight.count == 0
    assert stages.most_at_once() == depth  # measured independently from the timeline


def test_overlap_hides_reading_and_writing_behind_computing():
    stages = Timeline(compute_s=0.06, io_s=0.025)
    started = time.perf_counter()
    pipeline.Pipeline(stages).run(tasks(10), lambda o: None)
    overlapped = time.perf_counter() - started
    # one at a time this would take 10 × (0.06 + 2 × 0.025) = 1.1 s; overlapped, the compute
    # (0.6 s) plus the first read and the last write
    assert overlapped < 0.9, overlapped


class Blocking(dict):
    """Predictions whose second organelle is handed out only once the run is stopping."""

    def __init__(self, arrays, cancel, reached):
        super().__init__(arrays)
        self.cancel, self.reached, self.gets = cancel, reached, 0

    def __getitem__(self, key):
        self.gets += 1
        if self.gets == 2:  # the first output is on disk by now
            self.reached.set()
            assert self.cancel.wait(30)
        return super().__getitem__(key)


def test_stopping_rolls_back_the_write_in_flight(tmp_path):
    """SIGTERM's Terminated in the main thread: the background write stops and removes its file."""
    outputs = {i: {o: tmp_path / o.output_folder / f"im{i}.tiff" for o in ORGANELLES}
               for i in range(3)}
    reached = threading.Event()
    arrays = {o: np.full((20, 24), k, np.float32) for k, o in enumerate(ORGANELLES)}

    class Stopping:
        def load(self, source):
            return int(source.name[2:])

        def compute(self, i):
            if i == 2:  # image 1 is being written: stop here, as a SIGTERM would
                assert reached.wait(30)
                raise Terminated("SIGTERM")
            return i

        def write(self, i, outs, cancel=None):
            predictions = Blocking(arrays, cancel, reached) if i == 1 else arrays
            process.write_all(predictions, outs, (0.1, 0.1), cancel=cancel)
            return i

    def finish(i):
        return Outcome(Path(f"im{i}"), WRITTEN)

    pipe = pipeline.Pipeline(Stopping())
    items = [pipeline.Task(Path(f"im{i}"), outputs[i], finish, None) for i in range(3)]
    handed = []
    with pytest.raises(Terminated):
        pipe.run(items, handed.append)
    assert [o.source.name for o in handed] == ["im0"]
    assert all(p.is_file() for p in outputs[0].values())
    assert not any(p.exists() for p in outputs[1].values())  # its first output was removed
    assert not any(p.exists() for p in outputs[2].values())
    assert pipe.rolled_back == [Path("im1"), Path("im2")]
    assert not list(tmp_path.rglob("*.tmp*"))


def test_a_plain_callable_runs_one_image_at_a_time(tmp_path, conv_weights):
    inputs = make_inputs(tmp_path / "in", 2)
    proc = processor(conv_weights)
    threads = set()

    def plain(source, outputs):
        threads.add(threading.current_thread().name)
        return proc(source, outputs)

    assert run_batch(inputs, tmp_path / "out", plain) == 0
    assert threads == {threading.main_thread().name} and len(files(tmp_path / "out")) == 8
