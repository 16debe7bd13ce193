"""The GPU check: does the CUDA path work, agree with the CPU, and how fast is it? One JSON report.

On a machine with an NVIDIA GPU (onnxruntime-gpu with CUDA 13/cuDNN 9, torch with CUDA for
the training item) it measures, in well under 5 minutes:

- ``cuda_session``: a CUDA session of a real convolution model (cuDNN loaded) and the
  providers ORT actually used;
- ``parity``: CUDA vs CPU on ``test/input`` and a simulated image: fp32 within 1e-4 of the
  CPU output's range, fp16 within 5e-3;
- ``end_to_end``: seconds per image (read, four organelles, write; the batch pipeline)
  over tile batch sizes, fp32 and fp16;
- ``iobinding``: reused device buffers (IOBinding) vs plain ``run`` per batch;
- ``cudnn_search``: EXHAUSTIVE vs HEURISTIC (with cuDNN 9: the frontend's heuristic modes B
  and A) on a one-image job (sessions, warm-up, one image) and on a batch of
  ``--batch-images`` images;
- ``training``: steps/s of a short training run (AMP, channels-last), in a child process so
  that torch's CUDA and cuDNN libraries never share a process with ONNX Runtime's;
- ``gpu_memory``: the device's memory in use at peak (sampled; device-wide, so other
  processes count too), and torch's peak.

fp32 is measured as fp32: the check sets ``NVIDIA_TF32_OVERRIDE=0`` before CUDA starts (ORT
may fall back to TF32 where cuDNN has no plan without it). A machine whose ``nvidia-smi``
names a GPU but where no CUDA session runs fails the ``cuda_available`` check.

Without a GPU it runs the CPU parts (CPU references, end to end, IOBinding on CPU, a few
CPU training steps) and lists every part it skipped, and why, in ``skipped`` and on stdout.
``--quick`` shrinks every size for CI (seconds on a CPU).

    PYTHONPATH=. python benchmarks/gpu_check.py --out runs/gpu_check.json
    PYTHONPATH=. python benchmarks/gpu_check.py --quick --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import process  # noqa: E402 - after the path is set
from lightmycells.engine import manifest as manifests  # noqa: E402
from lightmycells.engine import runtime  # noqa: E402
from lightmycells.engine.predictor import Predictor  # noqa: E402
from lightmycells.engine.runtime import CudnnSearch  # noqa: E402
from lightmycells.io import ome  # noqa: E402
from lightmycells.run import allocator  # noqa: E402
from lightmycells.vocab import ORGANELLES  # noqa: E402

#: Parity bars, as fractions of the CPU fp32 output's range (issue 15).
FP32_PARITY, FP16_PARITY = 1e-4, runtime.FP16_PARITY
ITEMS = ("cuda_session", "parity", "end_to_end", "iobinding", "cudnn_search", "training",
         "gpu_memory")


class Report:
    """The JSON report: results per item, skipped items with their reason, pass/fail checks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.started, self.budget = time.perf_counter(), args.budget
        self.data: dict[str, Any] = {
            "command": " ".join(sys.argv), "quick": args.quick, "size": args.size,
            "host": platform.node(), "results": {}, "skipped": {}, "checks": {}, "errors": {},
        }

    def out_of_time(self, item: str, what: str) -> bool:
        """Whether the time budget is spent (then ``what`` of ``item`` is listed as skipped)."""
        if time.perf_counter() - self.started < self.budget:
            return False
        self.skip(f"{item}:{what}" if what else item, f"time budget of {self.budget:g} s spent")
        return True

    def skip(self, item: str, why: str) -> None:
        self.data["skipped"][item] = why
        print(f"SKIPPED {item}: {why}", flush=True)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.data["checks"][name] = {"pass": bool(ok), "detail": detail}
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    @contextlib.contextmanager
    def item(self, name: str) -> Iterator[dict[str, Any]]:
        """Collect one item's results; an error is recorded, not fatal to the other items."""
        result: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            yield result
        except Exception as exc:  # one broken item must not hide the others
            self.data["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"ERROR {name}: {type(exc).__name__}: {exc}", flush=True)
        result["seconds"] = round(time.perf_counter() - started, 3)
        self.data["results"][name] = result


class MemorySampler:
    """Samples the device's used memory every ``period`` s on a thread; ``peak`` in bytes."""

    def __init__(self, period: float = 0.05) -> None:
        self.period, self.peak, self.total = period, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            memory = runtime.gpu_memory()
            if memory is not None:
                free, self.total = memory
                self.peak = max(self.peak, self.total - free)
            self._stop.wait(self.period)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def simulated_image(folder: Path, size: int) -> Path:
    """A simulated BF field of view, ``size``², written as an OME-TIFF (the simulator's physics)."""
    from lightmycells.simulate import render_fov, study_for
    from lightmycells.vocab import Modality

    study = study_for(15, 1, Modality.BF, size=(size, size), planes=1)
    fov = render_fov(np.random.default_rng(15), study, labels=[], z_um=[0.0])
    path = folder / f"simulated_{size}_BF.ome.tiff"
    ome.write(path, fov.planes[0], channel="BF",
              pixel_size_um=(study.pixel_size_um, study.pixel_size_um))
    return path


def test_inputs(quick: bool) -> list[Path]:
    inputs = sorted((REPO / "test/input").rglob("*.tif*"))
    return inputs[:1] if quick else inputs


def predictions(rt: runtime.Runtime, manifest: Any, path: Path,
                batch_size: int = 4) -> dict[str, np.ndarray]:
    """Four organelles for one file through the container's processor, with ``rt``."""
    proc = process.Processor(Predictor(manifest, rt, batch_size=batch_size), manifest,
                             ORGANELLES)
    return {o.value: a for o, a in proc.compute(proc.load(path)).predictions.items()}


def relative_error(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    """The largest max |other − reference| over organelles, each over the reference's range."""
    worst = 0.0
    for name, ref in reference.items():
        span = float(ref.max() - ref.min()) or 1.0
        diff = np.abs(other[name].astype(np.float64) - ref.astype(np.float64)).max()
        worst = max(worst, float(diff) / span)
    return worst


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one untimed call."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- items ---------------------------------------------------------------------------------

def cuda_session(report: Report, manifest: Any, gpu: bool) -> None:
    with report.item("cuda_session") as out:
        ok, why = runtime.cuda_status()
        out["cuda_status"] = why
        out["available_providers"] = __import__("onnxruntime").get_available_providers()
        if not gpu:
            report.skip("cuda_session", f"no usable CUDA: {why}")
            return
        entry = manifest.models[0]
        rt = runtime.Runtime("cuda", images=1, fp16=False)
        model = rt.warm_up(entry, manifest.weights_dir)
        out["model"] = str(model.file.name)
        out["providers_used"] = model.session.get_providers()
        report.check("cuda_session", out["providers_used"][0] == runtime.CUDA_PROVIDER,
                     f"{model.file.name} runs on {out['providers_used']}")


def parity(report: Report, manifest: Any, files: list[Path], gpu: bool) -> None:
    with report.item("parity") as out:
        cpu = runtime.Runtime("cpu")
        cuda = {precision: runtime.Runtime("cuda", images=1, fp16=precision == "fp16")
                for precision in ("fp32", "fp16")} if gpu else {}
        for path in files:
            started = time.perf_counter()
            reference = predictions(cpu, manifest, path)
            row: dict[str, Any] = {"cpu_s": round(time.perf_counter() - started, 3)}
            out[path.name] = row
            if not gpu:
                continue
            for precision, bar in (("fp32", FP32_PARITY), ("fp16", FP16_PARITY)):
                rt = cuda[precision]
                error = relative_error(reference, predictions(rt, manifest, path))
                row[precision] = {"max_error_of_range": error,
                                  "fp16_probe_errors": dict(rt.fp16_errors),
                                  "files": sorted(m.file.name for m in rt.loaded)}
                report.check(f"parity_{precision}_{path.name}", error <= bar,
                             f"max |CUDA - CPU| = {error:.2e} of the range (bar {bar:g}; "
                             f"{', '.join(row[precision]['files'])})")
        if not gpu:
            report.skip("parity", "no GPU: CPU references computed (timed), nothing to compare")


def end_to_end(report: Report, manifest: Any, image: Path, args: argparse.Namespace,
               gpu: bool) -> None:
    from lightmycells.io.inputs import discover
    from lightmycells.run import batch

    with report.item("end_to_end") as out, tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for i in range(args.e2e_images):
            shutil.copy(image, inputs / f"im{i}_BF.ome.tiff")
        device = "cuda" if gpu else "cpu"
        precisions = ("fp32", "fp16") if gpu else ("fp32",)
        batch_sizes: list[int | None] = [1, 4, 16, None] if gpu else [None]
        out["device"], out["images"] = device, args.e2e_images
        entries = process.routed_models(manifest, ORGANELLES)
        for precision in precisions:
            rt = runtime.Runtime(device, images=args.e2e_images, fp16=precision == "fp16")
            for entry in entries:
                rt.warm_up(entry, manifest.weights_dir)
            out[f"{precision}_files"] = sorted(m.file.name for m in rt.loaded)
            for batch_size in batch_sizes:
                if report.out_of_time("end_to_end", f"{precision} batch {batch_size}"):
                    break
                size = batch_size or process.auto_batch_size(device, entries)
                proc = process.Processor(Predictor(manifest, rt, batch_size=size), manifest,
                                         ORGANELLES)
                proc.compute(proc.load(inputs / "im0_BF.ome.tiff"))  # first-shape search
                written = Path(tmp) / "out"
                with contextlib.redirect_stdout(io.StringIO()):
                    started = time.perf_counter()
                    code = batch.run(discover(inputs), proc, output=written,
                                     organelles=ORGANELLES)
                    seconds = (time.perf_counter() - started) / args.e2e_images
                shutil.rmtree(written)
                if code != 0:
                    raise RuntimeError(f"the batch run failed (exit {code})")
                key = f"{precision}_batch_{batch_size or f'auto({size})'}"
                out[key] = {"s_per_image": round(seconds, 4)}
                print(f"end_to_end {device} {key}: {seconds:.3f} s per image", flush=True)
        if not gpu:
            report.skip("end_to_end:cuda", "no GPU: measured on the CPU, fp32, default batch")


def iobinding(report: Report, manifest: Any, args: argparse.Namespace, gpu: bool) -> None:
    with report.item("iobinding") as out:
        device = "cuda" if gpu else "cpu"
        entry = manifest.models[0]
        edge = args.tile
        batch = runtime.probe_tile(edge).repeat(4, axis=0)
        for bind in (False, True):
            rt = runtime.Runtime(device, images=1000, fp16=False, bind=bind)
            model = rt.warm_up(entry, manifest.weights_dir)
            seconds = timed(lambda m=model: m(batch), args.repeat)
            out["bound" if bind else "plain"] = {"s_per_batch": round(seconds, 5)}
        out["device"], out["batch"] = device, list(batch.shape)
        out["plain_over_bound"] = round(out["plain"]["s_per_batch"]
                                        / out["bound"]["s_per_batch"], 3)
        print(f"iobinding {device} 4x{edge}²: plain {out['plain']['s_per_batch']:.4f} s, "
              f"bound {out['bound']['s_per_batch']:.4f} s per batch", flush=True)
        if not gpu:
            report.skip("iobinding:cuda", "no GPU: compared on the CPU provider only")


def cudnn_search(report: Report, manifest: Any, image: Path, args: argparse.Namespace,
                 gpu: bool) -> None:
    if not gpu:
        report.skip("cudnn_search", "no GPU: cuDNN's search exists only on CUDA")
        return
    with report.item("cudnn_search") as out:
        for search in (CudnnSearch.HEURISTIC, CudnnSearch.EXHAUSTIVE):
            started = time.perf_counter()
            rt = runtime.Runtime("cuda", search=search)
            entries = process.routed_models(manifest, ORGANELLES)
            for entry in entries:
                rt.warm_up(entry, manifest.weights_dir)
            proc = process.Processor(Predictor(manifest, rt), manifest, ORGANELLES)
            loaded = proc.load(image)
            proc.compute(loaded)
            one_job = time.perf_counter() - started
            started = time.perf_counter()
            done = 0
            while done < args.batch_images and not report.out_of_time("cudnn_search", ""):
                proc.compute(loaded)
                done += 1
            per_image = (time.perf_counter() - started) / max(1, done)
            out[str(search)] = {"cudnn9_frontend_mode": {"EXHAUSTIVE": "heuristic B",
                                                         "HEURISTIC": "heuristic A"}[search],
                                "one_image_job_s": round(one_job, 3),
                                f"batch_{args.batch_images}_s": round(
                                    one_job + per_image * args.batch_images, 3),
                                "steady_s_per_image": round(per_image, 4),
                                "images_computed": done}
            print(f"cudnn {search}: one-image job {one_job:.2f} s, then {per_image:.3f} s "
                  f"per image", flush=True)


def training(report: Report, args: argparse.Namespace) -> None:
    if report.out_of_time("training", ""):
        return
    try:
        import torch
    except ImportError:
        report.skip("training", "torch is not installed (the inference container has none)")
        return
    with report.item("training") as out:
        from lightmycells.train.config import ModelConfig
        from lightmycells.train.models import build_model

        cuda = torch.cuda.is_available()
        if not cuda:
            torch.set_num_threads(1)  # a few CPU steps only: threads would just spin-wait
        device = torch.device("cuda" if cuda else "cpu")
        model = build_model(ModelConfig(depth=3, width=16), 4).to(device)
        model = model.to(memory_format=torch.channels_last)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        edge, size = (64, 2) if args.quick else (256, 8)
        x = torch.rand(size, 1, edge, edge, device=device).to(memory_format=torch.channels_last)
        y = torch.rand(size, 4, edge, edge, device=device)
        steps = 3 if not cuda else args.train_steps

        def step() -> None:
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                loss = torch.nn.functional.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()

        step()  # warm-up (cuDNN autotuning, allocations)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
            out["torch_peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        seconds = time.perf_counter() - started
        out.update(device=device.type, amp=cuda, channels_last=True, steps=steps,
                   batch=[size, 1, edge, edge], steps_per_s=round(steps / seconds, 3))
        print(f"training {device.type}: {steps / seconds:.2f} steps/s "
              f"(batch {size}x{edge}², AMP {cuda})", flush=True)
        if not cuda:
            report.skip("training:cuda", "torch sees no CUDA device: a few CPU steps, no AMP")


def training_in_child(report: Report, args: argparse.Namespace) -> None:
    """The ``training`` item in a child process (``--only training``), merged into ``report``.

    torch loads its own CUDA and cuDNN; beside the ones ONNX Runtime loaded, of another
    CUDA major version, the process would mix them (microsoft/onnxruntime issue 24266).
    """
    if report.out_of_time("training", ""):
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "training.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--only", "training",
                   "--out", str(out), *(["--quick"] if args.quick else [])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            report.data["errors"]["training"] = "the training child ran over 300 s"
            return
        print("".join(line for line in done.stdout.splitlines(keepends=True)
                      if not line.startswith("gpu_check:")), end="", flush=True)
        if not out.exists():
            report.data["errors"]["training"] = (f"the training child failed (exit "
                                                 f"{done.returncode}): {done.stderr[-300:]}")
            return
        child = json.loads(out.read_text())
    for key in ("results", "skipped", "errors"):
        report.data[key].update(child[key])


def gpu_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=20, check=True)
        return done.stdout.strip()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs/gpu_check.json")
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI, seconds on a CPU)")
    parser.add_argument("--budget", type=float, default=240.0,
                        help="seconds after which remaining measurements are skipped (and "
                        "listed as such), so that the check ends within 5 minutes")
    parser.add_argument("--only", choices=["training"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size = 256 if args.quick else 2048
    args.tile = 128 if args.quick else 1024
    args.e2e_images, args.batch_images = (2, 3) if args.quick else (4, 50)
    args.repeat, args.train_steps = (2, 3) if args.quick else (10, 50)
    os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")  # before CUDA starts: fp32 is fp32
    allocator.keep_large_blocks()  # as inference.py runs
    started = time.perf_counter()
    report = Report(args)
    if args.only == "training":
        training(report, args)
        return write_report(report, args, started)
    ok, why = runtime.cuda_status()
    gpu = ok
    report.data.update(gpu=gpu, cuda_status=why, gpu_name=gpu_name(),
                       onnxruntime=__import__("onnxruntime").__version__,
                       nvidia_tf32_override=os.environ["NVIDIA_TF32_OVERRIDE"])
    if report.data["gpu_name"] and not gpu:
        report.check("cuda_available", False,
                     f"nvidia-smi sees {report.data['gpu_name']}, but {why}")
    print(f"gpu_check: {'GPU ' + str(report.data['gpu_name']) if gpu else 'no GPU'} ({why}); "
          f"{'quick' if args.quick else 'full'} sizes", flush=True)
    manifest = manifests.load(args.weights)
    sampler = MemorySampler() if gpu else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, sampler as memory:
        image = simulated_image(Path(tmp), args.size)
        cuda_session(report, manifest, gpu)
        parity(report, manifest, [*test_inputs(args.quick), image], gpu)
        end_to_end(report, manifest, image, args, gpu)
        iobinding(report, manifest, args, gpu)
        cudnn_search(report, manifest, image, args, gpu)
    training_in_child(report, args)
    if gpu and memory is not None and memory.total:
        report.data["results"]["gpu_memory"] = {"peak_used_mb": round(memory.peak / 2**20, 1),
                                                "total_mb": round(memory.total / 2**20, 1),
                                                "scope": "device-wide (all processes)"}
    else:
        report.skip("gpu_memory", "no GPU memory to sample" if not gpu
                    else "neither the CUDA runtime nor NVML answered")
    return write_report(report, args, started)


def write_report(report: Report, args: argparse.Namespace, started: float) -> int:
    """Write the JSON report, print the summary line; exit code 1 on a failed check or error."""
    report.data["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.data, indent=2, default=str))
    failed = [name for name, c in report.data["checks"].items() if not c["pass"]]
    print(f"gpu_check: {report.data['seconds']} s; {len(report.data['checks'])} check(s), "
          f"{len(failed)} failed; skipped: {', '.join(report.data['skipped']) or 'none'}; "
          f"errors: {', '.join(report.data['errors']) or 'none'}; report {args.out}", flush=True)
    return 1 if failed or report.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
