"""Would int8 models make CPU inference faster at the same quality? A probe, not a feature.

Usage:
    PYTHONPATH=. python benchmarks/int8_probe.py --calibration runs/real5/data/train \\
        --out runs/int8/weights nucleus mitochondria
    python inference.py --input runs/real5/data/heldout --output runs/int8/pred \\
        --weights runs/int8/weights --device cpu --organelles nucleus,mitochondria
    python -m lightmycells.evaluate --truth runs/real5/data/heldout --pred runs/int8/pred \\
        --organelles nucleus,mitochondria --out runs/int8/metrics.json

Copies the shipped weights to ``--out`` and replaces the named organelles' models by
ONNX Runtime's static int8 quantisation (QDQ, per-channel int8 weights, uint8
activations), calibrated on 256² tiles of ``--calibration``'s planes, normalised and
resampled to each model's pixel size as the engine does. Prints the seconds per 1024² tile
of the fp32 and int8 model, side by side, on the CPU provider with 2 threads.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from lightmycells.engine import normalize, resample
from lightmycells.io import ome


def tiles(files: list[Path], um: float | None, rng: np.random.Generator) -> list[np.ndarray]:
    """One random 256² tile per plane, as the model sees it."""
    out = []
    for path in files:
        image, meta = ome.read(path)
        x = normalize.Percentile().before(image)[0]
        if um and meta.pixel_size_um and resample.needs_resampling(meta.pixel_size_um, um):
            x = resample.to_pixel_size(x, meta.pixel_size_um, um)
        if min(x.shape) >= 256:
            y0, x0 = (int(rng.integers(0, n - 255)) for n in x.shape)
            out.append(x[None, None, y0:y0 + 256, x0:x0 + 256].astype(np.float32))
    return out


def seconds_per_tile(path: Path, x: np.ndarray) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    session.run(None, feed)
    started = time.perf_counter()
    for _ in range(3):
        session.run(None, feed)
    return (time.perf_counter() - started) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("organelles", nargs="+")
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    args = parser.parse_args()
    args.out, args.weights = args.out.resolve(), args.weights.resolve()
    args.calibration = args.calibration.resolve()
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.weights, args.out)
    manifest = json.loads((args.out / "manifest.json").read_text())
    files = sorted(args.calibration.rglob("*_z*.ome.tiff"))[::12][:24]
    rng = np.random.default_rng(0)
    probe = rng.normal(0.3, 0.3, (1, 1, 1024, 1024)).astype(np.float32)
    print("| model | calibration tiles | fp32 s per 1024² tile | int8 s | fp32 ÷ int8 |")
    print("| --- | --- | --- | --- | --- |")
    for entry in manifest["models"]:
        if not set(entry["organelles"]) & set(args.organelles):
            continue
        source, target = args.weights / entry["file"], args.out / entry["file"]
        calibration = tiles(files, entry["pixel_size_um"], rng)
        name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]
                                    ).get_inputs()[0].name

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{name: t} for t in calibration])  # noqa: B023

            def get_next(self):
                return next(self.items, None)

        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # ORT's temp files
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True)
        entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
        entry.pop("fp16", None)
        fp32, int8 = seconds_per_tile(source, probe), seconds_per_tile(target, probe)
        print(f"| {entry['name']} | {len(calibration)} | {fp32:.3f} | {int8:.3f} | "
              f"{fp32 / int8:.2f} |")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
