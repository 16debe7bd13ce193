"""ONNX Runtime sessions: device choice, threads, one cached session per model — the only ORT code.

``select_device("auto")`` creates a tiny CUDA convolution session and runs it, because
``get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed, even with no
GPU or no CUDA libraries, and ORT then falls back to the CPU silently. ``"cuda"`` requested
but unusable raises :class:`DeviceError`; ``"auto"`` falls back to the CPU and says why in
one line. On the CPU the thread count comes from the CPUs this process may use (affinity
and cgroup quota: containers report the host's cores). On CUDA (choices made without a GPU
to measure them on; ``benchmarks/gpu_check.py`` measures them):

- cuDNN's algorithm choice suits the job (:func:`choose_search`): ORT's cheaper setting for
  a one-image Grand-Challenge job, the costlier one for batches of
  :data:`EXHAUSTIVE_FROM_IMAGES` or more (see :class:`CudnnSearch` for what they are with
  cuDNN 9);
- inputs and outputs go through IOBinding with device buffers kept per batch shape and
  reused by every later batch of that shape (:class:`OnnxModel`);
- CUDA and cuDNN libraries installed as pip wheels (``nvidia-*``) are preloaded
  (``onnxruntime.preload_dlls``): the system loader path does not hold them;
- the tile batch size can follow the free GPU memory (:func:`gpu_memory`,
  :func:`tile_batch_size`);
- a manifest entry's fp16 variant (parity-checked against PyTorch at export) is used only
  if it also agrees with the fp32 model on this GPU within :data:`FP16_PARITY` of the
  output range on a probe tile (:func:`fp16_error`); otherwise fp32, said in one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import re
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lightmycells.cpus import available_cpus
from lightmycells.engine.manifest import ModelEntry

DEVICES = ("auto", "cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class CudnnSearch(StrEnum):
    """How cuDNN picks a convolution algorithm (ORT's ``cudnn_conv_algo_search``).

    With cuDNN 9, ORT (≥ 1.20) builds convolutions through the cuDNN frontend, which maps
    EXHAUSTIVE to heuristic mode B (a costlier, usually better pick), HEURISTIC to mode A and
    DEFAULT to the fallback mode, which is reported to be far slower (microsoft/onnxruntime
    issue 22705): none of them times every algorithm any more, as the legacy
    ``cudnnFind`` path did. A plan is rebuilt whenever a convolution's input shape changes,
    so a run keeps one tile shape and batch per image size. Not measured on a GPU here.
    """

    EXHAUSTIVE = "EXHAUSTIVE"
    HEURISTIC = "HEURISTIC"
    DEFAULT = "DEFAULT"


#: Images in a job from which EXHAUSTIVE (heuristic mode B) is chosen. Written when it meant
#: a timed search of seconds per tile shape, which a one-image job cannot pay off; with
#: cuDNN 9 both modes are heuristics and the gap may be small either way. A guess until
#: ``benchmarks/gpu_check.py`` measures both on a one-image job and a 50-image batch.
EXHAUSTIVE_FROM_IMAGES = 16
#: Base CUDA provider options; ``cudnn_conv_algo_search`` is added per job. TF32 is off so
#: that fp32 means fp32 on Ampere and later (CUDA vs CPU within 1e-4 of the range; TF32
#: keeps 10 mantissa bits): the fast path is the fp16 variant, where its parity holds. ORT
#: falls back to TF32 where cuDNN finds no plan without it (microsoft/onnxruntime PR 21752);
#: ``NVIDIA_TF32_OVERRIDE=0`` in the environment rules it out (the GPU check sets it).
#: ``cudnn_conv_use_max_workspace`` sizes only the legacy search's workspace.
CUDA_OPTIONS: dict[str, Any] = {
    "device_id": 0,
    "use_tf32": "0",
    "cudnn_conv_use_max_workspace": "1",
    "do_copy_in_default_stream": "1",
}
#: fp16 is used on CUDA only when its output on a probe tile is within this fraction of the
#: fp32 output's range (the issue's parity bar; export checks 0.05 absolute vs PyTorch).
FP16_PARITY = 5e-3
#: IOBinding buffers kept per model: one per batch shape (a run of same-sized images uses
#: one or two); older ones are dropped so that device memory stays bounded.
BOUND_SHAPES = 4
#: Tile batch size from free GPU memory: the share of free memory the tiles may take (the
#: rest is left to cuDNN workspaces and other processes), and the device bytes per tile
#: pixel, an estimate: the CPU working set of the width-16 UNet is ~700 B/px at fp32
#: (docs/BENCHMARKS.md); ×3 as headroom for cuDNN's plans' workspaces and the arena.
GPU_MEMORY_SHARE = 0.5
GPU_BYTES_PER_PIXEL = 2048
#: Tiles per model call (in patch² tiles) when the free GPU memory is unknown, and on CPU.
DEFAULT_BATCH = 4
MAX_BATCH = 64
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
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        ort.preload_dlls()  # CUDA/cuDNN from pip wheels; else the loader's own path, as before
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


def choose_search(images: int | None, *,
                  exhaustive_from: int = EXHAUSTIVE_FROM_IMAGES) -> CudnnSearch:
    """The cuDNN search for a job of ``images`` images (None: unknown, taken as small)."""
    if images is not None and images >= exhaustive_from:
        return CudnnSearch.EXHAUSTIVE
    return CudnnSearch.HEURISTIC


def session_plan(entry: ModelEntry, device: str, *,
                 search: CudnnSearch = CudnnSearch.EXHAUSTIVE,
                 fp16: bool | None = None) -> tuple[str, list[Any]]:
    """The ONNX file (relative to the weights folder) and provider list for ``device``.

    ``fp16``: take the entry's fp16 variant when it has one (None: on CUDA only). On CUDA,
    cuDNN's ``search`` (:class:`Runtime` picks it per job with :func:`choose_search`).
    """
    half = (device == "cuda") if fp16 is None else fp16
    file = entry.fp16.file if entry.fp16 is not None and half else entry.file
    if device == "cuda":
        options = {**CUDA_OPTIONS, "cudnn_conv_algo_search": str(search)}
        return file, [(CUDA_PROVIDER, options), CPU_PROVIDER]
    if device == "cpu":
        return file, [CPU_PROVIDER]
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
    bind:
        Run through IOBinding with input and output buffers on ``device`` kept per batch
        shape and reused (default: on CUDA only). Each call copies the batch into the kept
        input buffer and the result out of the kept output buffer. Plain ``run`` makes the
        same two copies with buffers from the session's arena, so the gain is expected to be
        small; ``benchmarks/gpu_check.py`` (``iobinding``) measures it.
    """

    def __init__(self, session: ort.InferenceSession, entry: ModelEntry, device: str,
                 file: Path, *, bind: bool | None = None) -> None:
        self.session, self.entry, self.device, self.file = session, entry, device, file
        self.bind = device == "cuda" if bind is None else bind
        (inp,), outputs = session.get_inputs(), session.get_outputs()
        self._input, self._output = inp.name, outputs[0].name
        self._dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self._out_dtype = np.float16 if outputs[0].type == "tensor(float16)" else np.float32
        #: batch shape → (binding, input buffer, output buffer), most recently used last
        self._bound: OrderedDict[tuple[int, ...], tuple[Any, Any, Any]] = OrderedDict()
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
        expected = (batch.shape[0], len(self.entry.organelles), *batch.shape[2:])
        if self.bind:
            y = self._run_bound(x, expected)
        else:
            y = self.session.run([self._output], {self._input: x})[0]
        if y.shape != expected:
            raise ValueError(f"model {self.entry.name!r} ({self.file}) returned shape {y.shape} "
                             f"for input {batch.shape}; the manifest implies {expected}")
        return y.astype(np.float32, copy=False)

    @property
    def bound_shapes(self) -> list[tuple[int, ...]]:
        """Batch shapes with kept IOBinding buffers, least recently used first."""
        return list(self._bound)

    def _run_bound(self, x: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
        if x.shape not in self._bound:
            if len(self._bound) >= BOUND_SHAPES:
                self._bound.popitem(last=False)
            make = ort.OrtValue.ortvalue_from_shape_and_type
            inp = make(x.shape, self._dtype, self.device, 0)
            out = make(expected, self._out_dtype, self.device, 0)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self._input, inp)
            binding.bind_ortvalue_output(self._output, out)
            self._bound[x.shape] = (binding, inp, out)
        self._bound.move_to_end(x.shape)
        binding, inp, out = self._bound[x.shape]
        inp.update_inplace(x)
        self.session.run_with_iobinding(binding)
        # a CPU buffer's numpy() is a view of the buffer the next batch overwrites
        return np.array(out.numpy(), copy=True) if self.device == "cpu" else out.numpy()


def probe_tile(edge: int, seed: int = 0) -> np.ndarray:
    """A ``(1, 1, edge, edge)`` image-like tile in ``[0, 1]`` (smooth pattern plus noise)."""
    yy, xx = np.mgrid[0:edge, 0:edge].astype(np.float32) / edge
    pattern = 0.5 + 0.25 * np.sin(9 * xx + 4 * yy) * np.cos(7 * yy - 3 * xx)
    noise = np.random.default_rng(seed).random((edge, edge), dtype=np.float32) * 0.25
    return (pattern + noise)[None, None].astype(np.float32)


def fp16_error(reference: Callable[[np.ndarray], np.ndarray],
               candidate: Callable[[np.ndarray], np.ndarray], tile: np.ndarray) -> float:
    """Largest |candidate − reference| on ``tile``, as a fraction of the reference's range."""
    ref = np.asarray(reference(tile), np.float64)
    got = np.asarray(candidate(tile), np.float64)
    span = float(ref.max() - ref.min()) or 1.0
    return float(np.abs(got - ref).max()) / span


def gpu_memory(device_id: int = 0) -> tuple[int, int] | None:
    """(free, total) bytes of the CUDA device, or None where they cannot be read.

    Asks the CUDA runtime the session already loaded (``cudaMemGetInfo``: it sees
    ``CUDA_VISIBLE_DEVICES`` and this process's own allocations), else NVML, which ships
    with the driver. No GPU, no driver: None.
    """
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12"):
        with contextlib.suppress(OSError, AttributeError):
            cudart = ctypes.CDLL(name)
            if cudart.cudaSetDevice(device_id) == 0 and \
                    cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) == 0:
                return free.value, total.value
    return _nvml_memory(device_id)


def _nvml_memory(device_id: int) -> tuple[int, int] | None:
    class Memory(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                    ("used", ctypes.c_ulonglong)]

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    if visible != [""]:  # NVML counts GPUs in PCI order: right with CUDA_DEVICE_ORDER=PCI_BUS_ID
        try:
            device_id = int(visible[device_id])
        except (ValueError, IndexError):  # a UUID or MIG name: which GPU is unknown here
            return None
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        handle, memory = ctypes.c_void_p(), Memory()
        if nvml.nvmlDeviceGetHandleByIndex_v2(device_id, ctypes.byref(handle)) != 0 or \
                nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
            return None
        return memory.free, memory.total
    finally:
        nvml.nvmlShutdown()


def tile_batch_size(free_bytes: int | None, patch: int, *, models: int = 1,
                    bytes_per_pixel: float = GPU_BYTES_PER_PIXEL,
                    share: float = GPU_MEMORY_SHARE, fallback: int = DEFAULT_BATCH) -> int:
    """Tiles per model call, in ``patch``² tiles, that fit the free GPU memory.

    Each of ``models`` sessions keeps its own CUDA arena at its peak, so they split the
    ``share`` of ``free_bytes``. ``free_bytes`` None (not on CUDA, or unknown): ``fallback``.
    Between 1 and :data:`MAX_BATCH`.
    """
    if free_bytes is None:
        return fallback
    budget = free_bytes * share / max(1, models)
    return int(min(MAX_BATCH, max(1, budget // (bytes_per_pixel * patch * patch))))


class Runtime:
    """Creates and caches one ONNX Runtime session per model for the whole run.

    Parameters
    ----------
    device:
        ``"cpu"`` or ``"cuda"`` (resolve ``"auto"`` with :func:`select_device` first).
    threads:
        CPU threads per session; default :func:`available_cpus`.
    images:
        Images the run will process (None: unknown); on CUDA it picks cuDNN's search
        (:func:`choose_search`) unless ``search`` is given.
    search:
        cuDNN's algorithm search, overriding the choice by ``images``.
    fp16:
        On CUDA, consider the manifest's fp16 variants (each still has to pass the parity
        check on this GPU, :data:`FP16_PARITY`); False: always fp32.
    bind:
        IOBinding with reused buffers (default: on CUDA only; see :class:`OnnxModel`).
    report:
        Where a model falling back from fp16 to fp32 is said (default: standard error).
    """

    def __init__(self, device: str, threads: int | None = None, *, images: int | None = None,
                 search: CudnnSearch | None = None, fp16: bool = True,
                 bind: bool | None = None, report: Callable[[str], None] = _stderr) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"Runtime device must be 'cpu' or 'cuda' (got {device!r}); "
                             f"resolve 'auto' with select_device first")
        self.device = device
        self.threads = threads if threads is not None else available_cpus()
        self.search = CudnnSearch(search) if search is not None else choose_search(images)
        self.fp16, self.bind, self.report = fp16, bind, report
        #: model name → max fp16 error (fraction of range) found by the parity check
        self.fp16_errors: dict[str, float] = {}
        self._models: dict[tuple[Path, str], OnnxModel] = {}

    @property
    def loaded(self) -> list[OnnxModel]:
        """The models loaded so far (after fp16 parity checks: what really runs)."""
        return list(self._models.values())

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

    def _wants_fp16(self, entry: ModelEntry) -> bool:
        """Whether to try ``entry``'s fp16 variant: on CUDA, when it has one and fp16 is on."""
        return self.fp16 and self.device == "cuda" and entry.fp16 is not None

    def _load(self, entry: ModelEntry, weights_dir: Path) -> OnnxModel:
        fp16 = self._wants_fp16(entry)
        model = self._session(entry, weights_dir, fp16=fp16)
        if not fp16:
            return model
        full = self._session(entry, weights_dir, fp16=False)
        tile = probe_tile(model.fixed_tile[0] if model.fixed_tile else entry.patch)
        try:
            error = fp16_error(full, model, tile)
        except Exception as exc:  # ORT's exception types are not public API
            raise ModelError(_one_line(f"{model.file}: the fp16 parity run failed "
                                       f"({type(exc).__name__}: {exc})")) from None
        self.fp16_errors[entry.name] = error
        if error <= FP16_PARITY:
            return model
        self.report(f"{model.file}: fp16 differs from fp32 by {error:.2e} of the output range "
                    f"on this GPU (> {FP16_PARITY:g}); running {full.file.name} in fp32")
        return full

    def _session(self, entry: ModelEntry, weights_dir: Path, *, fp16: bool) -> OnnxModel:
        file, providers = session_plan(entry, self.device, search=self.search, fp16=fp16)
        path = weights_dir / file
        try:
            session = ort.InferenceSession(str(path), self.options(), providers=providers)
        except Exception as exc:  # ORT's exception types are not public API
            raise ModelError(_one_line(f"{path}: onnxruntime cannot load the model "
                                       f"({type(exc).__name__}: {exc})")) from None
        if self.device == "cuda" and CUDA_PROVIDER not in session.get_providers():
            raise DeviceError(f"{path}: the session fell back to {session.get_providers()} "
                              f"although CUDA was selected")
        return OnnxModel(session, entry, self.device, path, bind=self.bind)
