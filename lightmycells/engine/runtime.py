"""ONNX Runtime sessions: device choice, threads, one cached session per model — the only ORT code.

``select_device("auto")`` creates a tiny CUDA convolution session and runs it, because
``get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed, even with no
GPU or no CUDA libraries, and ORT then falls back to the CPU silently. ``"cuda"`` requested
but unusable raises :class:`DeviceError`; ``"auto"`` falls back to the CPU and says why in
one line. On the CPU the thread count comes from the CPUs this process may use (affinity
and cgroup quota: containers report the host's cores). On CUDA, inputs and outputs go
through IOBinding, cuDNN searches the fastest convolution once per (fixed) tile shape, and
a manifest entry's fp16 variant is used when it has one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lightmycells.cpus import available_cpus
from lightmycells.engine.manifest import ModelEntry

DEVICES = ("auto", "cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
#: cuDNN options: tiles have one fixed shape per model, so an exhaustive algorithm search
#: runs once per shape and pays off on every later batch.
CUDA_OPTIONS: dict[str, Any] = {
    "device_id": 0,
    "cudnn_conv_algo_search": "EXHAUSTIVE",
    "cudnn_conv_use_max_workspace": "1",
    "do_copy_in_default_stream": "1",
}
_ORT_ERROR_LEVEL = 3  # session log level: errors only (ORT warns about harmless CPU fallbacks)
#: Session option: take CPU memory from one arena shared by all sessions of the process.
#: With an arena per session each keeps its peak working set (~0.8 GB for a width-16 UNet on
#: a 1088² tile), so four models held 3.4 GB; sharing one keeps the peak at one model's
#: (1.0 GB) and saves page faults (docs/BENCHMARKS.md).
_USE_SHARED_ARENA = ("session.use_env_allocators", "1")

# A one-node ONNX model y = Conv(x, w): a 3×3 all-ones kernel, padding 1, on a float[1,1,8,8],
# serialised; it is what ``onnx.helper`` produces at opset 13 (tests/test_runtime.py rebuilds it
# with onnx and compares). A convolution, not an element-wise op, so that running it on CUDA
# loads cuDNN: a CUDA runtime without cuDNN passes an element-wise probe and fails on the
# first real model. Embedded so the inference container does not need the ``onnx`` package.
PROBE_MODEL = (
    b'\x08\x07\x12\x00:\x9a\x01\n"\n\x01x\n\x01w\x12\x01y"\x04Conv*\x11\n\x04pads@\x01@\x01'
    b"@\x01@\x01\xa0\x01\x07\x12\x05probe*3\x08\x01\x08\x01\x08\x03\x08\x03\x10\x01B\x01wJ$"
    + b"\x00\x00\x80?" * 9
    + b"Z\x1b\n\x01x\x12\x16\n\x14\x08\x01\x12\x10\n\x02\x08\x01\n\x02\x08\x01\n\x02\x08\x08"
    b"\n\x02\x08\x08b\x1b\n\x01y\x12\x16\n\x14\x08\x01\x12\x10\n\x02\x08\x01\n\x02\x08\x01"
    b"\n\x02\x08\x08\n\x02\x08\x08B\x04\n\x00\x10\r"
)
#: The probe's output on an all-ones input summed: 36 inner pixels see 9 ones, 24 edge
#: pixels 6, 4 corners 4. A CUDA session that runs but computes garbage fails the probe too.
PROBE_SUM = 36 * 9 + 24 * 6 + 4 * 4


class DeviceError(RuntimeError):
    """The requested device cannot be used; the message says why."""


class ModelError(RuntimeError):
    """A model file cannot be loaded or run; the message (one line) names the file and why."""


def _one_line(text: str) -> str:
    """ONNX Runtime's messages may span lines; a run's error line must not."""
    return " ".join(str(text).split())


@functools.cache
def _register_shared_cpu_arena() -> None:
    """Register the process-wide CPU arena that sessions opt into with ``_USE_SHARED_ARENA``."""
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                               ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))  # ORT defaults


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _captured_native_stderr() -> Iterator[list[str]]:
    """Collect what native code writes to file descriptor 2 (ORT logs there, not to sys.stderr)."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def _reason(log_lines: list[str]) -> str:
    """The most useful phrase of ORT's CUDA failure log, e.g. a missing library."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(log_lines))
    for pattern in (r"with error: ([^\n]+)", r"(Failed to create CUDAExecutionProvider)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip()
    return "the CUDA provider did not load (no GPU, driver or CUDA/cuDNN libraries)"


def cuda_status() -> tuple[bool, str]:
    """Whether a CUDA session can be created and run here, and why not if it cannot."""
    if CUDA_PROVIDER not in ort.get_available_providers():
        return False, f"this onnxruntime build ({ort.get_device()}) has no CUDA provider"
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERROR_LEVEL
    try:
        with _captured_native_stderr() as log:
            session = ort.InferenceSession(
                PROBE_MODEL, options, providers=[(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER])
            used = session.get_providers()
            if CUDA_PROVIDER in used:
                (y,) = session.run(None, {"x": np.ones((1, 1, 8, 8), np.float32)})
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types
        return False, _one_line(f"creating or running a CUDA convolution failed "
                                f"({type(exc).__name__}: {exc})")
    if CUDA_PROVIDER not in used:
        return False, _reason(log)
    if float(y.sum()) != PROBE_SUM:
        return False, f"a CUDA convolution returned a wrong result (sum {float(y.sum())}, " \
                      f"expected {PROBE_SUM})"
    return True, "CUDA session created and a convolution ran"


def select_device(requested: str, *, report: Callable[[str], None] = _stderr) -> str:
    """Resolve ``"auto"``, ``"cpu"`` or ``"cuda"`` to the device to run on.

    Parameters
    ----------
    requested:
        ``"auto"``: CUDA if a CUDA session can be created and run, else the CPU (and one
        line through ``report`` saying why). ``"cpu"``: the CPU. ``"cuda"``: CUDA or an error.
    report:
        Where the fallback line goes (default: standard error).

    Raises
    ------
    DeviceError
        ``"cuda"`` was requested and CUDA cannot be used.
    ValueError
        An unknown device name.
    """
    if requested not in DEVICES:
        raise ValueError(f"unknown device {requested!r} (expected one of {', '.join(DEVICES)})")
    if requested == "cpu":
        return "cpu"
    ok, why = cuda_status()
    if ok:
        return "cuda"
    if requested == "cuda":
        raise DeviceError(f"--device cuda requested, but CUDA is unavailable: {why}")
    report(f"device auto: running on CPU ({available_cpus()} threads) because CUDA is "
           f"unavailable: {why}")
    return "cpu"


def session_plan(entry: ModelEntry, device: str) -> tuple[str, list[Any]]:
    """The ONNX file (relative to the weights folder) and provider list for ``device``."""
    if device == "cuda":
        file = entry.fp16.file if entry.fp16 is not None else entry.file
        return file, [(CUDA_PROVIDER, dict(CUDA_OPTIONS)), CPU_PROVIDER]
    if device == "cpu":
        return entry.file, [CPU_PROVIDER]
    raise ValueError(f"device must be 'cpu' or 'cuda' after select_device (got {device!r})")


class OnnxModel:
    """A loaded model: ``(B, 1, T, T)`` float32 in, ``(B, C, T, T)`` float32 out.

    Attributes
    ----------
    entry:
        The manifest entry (``entry.organelles`` names the output channels).
    device:
        ``"cpu"`` or ``"cuda"``.
    file:
        The ONNX file the session was built from (the fp16 variant on CUDA, if any).
    """

    def __init__(self, session: ort.InferenceSession, entry: ModelEntry, device: str,
                 file: Path) -> None:
        self.session, self.entry, self.device, self.file = session, entry, device, file
        (inp,), outputs = session.get_inputs(), session.get_outputs()
        self._input, self._output = inp.name, outputs[0].name
        self._dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        dims = list(inp.shape)
        #: (H, W) when the model only takes one spatial size (e.g. a ViT), else None.
        self.fixed_tile: tuple[int, int] | None = (
            (dims[2], dims[3]) if len(dims) == 4 and all(isinstance(d, int) for d in dims[2:])
            else None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; returns float32 ``(B, C, T, T)`` with C = len(entry.organelles)."""
        if batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"model {self.entry.name!r} takes (B, 1, H, W) input "
                             f"(got {batch.shape})")
        x = np.ascontiguousarray(batch, dtype=self._dtype)
        if self.device == "cuda":
            binding = self.session.io_binding()
            binding.bind_cpu_input(self._input, x)
            binding.bind_output(self._output, "cuda")
            self.session.run_with_iobinding(binding)
            y = binding.copy_outputs_to_cpu()[0]
        else:
            y = self.session.run([self._output], {self._input: x})[0]
        expected = (batch.shape[0], len(self.entry.organelles), *batch.shape[2:])
        if y.shape != expected:
            raise ValueError(f"model {self.entry.name!r} ({self.file}) returned shape {y.shape} "
                             f"for input {batch.shape}; the manifest implies {expected}")
        return y.astype(np.float32, copy=False)


class Runtime:
    """Creates and caches one ONNX Runtime session per model for the whole run.

    Parameters
    ----------
    device:
        ``"cpu"`` or ``"cuda"`` (resolve ``"auto"`` with :func:`select_device` first).
    threads:
        CPU threads per session; default :func:`available_cpus`.
    """

    def __init__(self, device: str, threads: int | None = None) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"Runtime device must be 'cpu' or 'cuda' (got {device!r}); "
                             f"resolve 'auto' with select_device first")
        self.device = device
        self.threads = threads if threads is not None else available_cpus()
        self._models: dict[tuple[Path, str], OnnxModel] = {}

    def options(self) -> ort.SessionOptions:
        """Session options: full graph optimisation, ``threads`` threads, the shared CPU arena."""
        _register_shared_cpu_arena()
        options = ort.SessionOptions()
        options.add_session_config_entry(*_USE_SHARED_ARENA)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = _ORT_ERROR_LEVEL
        return options

    def model(self, entry: ModelEntry, weights_dir: str | Path) -> OnnxModel:
        """The session for ``entry`` (created on first use, then reused).

        Raises
        ------
        DeviceError
            On ``"cuda"`` when ORT could not put the session on CUDA (it would silently
            run on the CPU otherwise).
        ModelError
            When ONNX Runtime cannot load the file, naming it.
        """
        key = (Path(weights_dir).resolve(), entry.name)
        if key not in self._models:
            self._models[key] = self._load(entry, Path(weights_dir))
        return self._models[key]

    def warm_up(self, entry: ModelEntry, weights_dir: str | Path) -> OnnxModel:
        """Create ``entry``'s session and run it once on one zero tile of its patch size.

        Called for every model a run may route to before its first image, so that a model
        that will not load or run stops the run once, with one line, instead of failing
        every image the same way.

        Raises
        ------
        DeviceError
            As :meth:`model`.
        ModelError
            When the file does not load, or the test tile does not run or comes back in the
            wrong shape; one line naming the file.
        """
        model = self.model(entry, weights_dir)
        tile = model.fixed_tile or (entry.patch, entry.patch)
        try:
            model(np.zeros((1, 1, *tile), np.float32))
        except Exception as exc:  # ORT's exception types are not public API
            raise ModelError(_one_line(f"{model.file}: a test run on one {tile[0]}x{tile[1]} "
                                       f"tile failed ({type(exc).__name__}: {exc})")) from None
        return model

    def _load(self, entry: ModelEntry, weights_dir: Path) -> OnnxModel:
        file, providers = session_plan(entry, self.device)
        path = weights_dir / file
        try:
            session = ort.InferenceSession(str(path), self.options(), providers=providers)
        except Exception as exc:  # ORT's exception types are not public API
            raise ModelError(_one_line(f"{path}: onnxruntime cannot load the model "
                                       f"({type(exc).__name__}: {exc})")) from None
        if self.device == "cuda" and CUDA_PROVIDER not in session.get_providers():
            raise DeviceError(f"{path}: the session fell back to {session.get_providers()} "
                              f"although CUDA was selected")
        return OnnxModel(session, entry, self.device, path)
