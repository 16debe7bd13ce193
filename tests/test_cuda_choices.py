"""The CUDA choices made without a GPU: cuDNN search per job, reused IOBinding buffers,
tile batch from free memory, fp16 only where parity holds — each run on the CPU here."""

import numpy as np
import pytest

import process
from lightmycells.engine import manifest, runtime
from lightmycells.engine.runtime import CudnnSearch
from tests import onnx_models


@pytest.mark.parametrize(("images", "expected"), [
    (None, CudnnSearch.HEURISTIC), (1, CudnnSearch.HEURISTIC), (15, CudnnSearch.HEURISTIC),
    (16, CudnnSearch.EXHAUSTIVE), (5000, CudnnSearch.EXHAUSTIVE)])
def test_search_follows_the_job_size(images, expected):
    assert runtime.EXHAUSTIVE_FROM_IMAGES == 16
    assert runtime.choose_search(images) == expected
    assert runtime.Runtime("cpu", 1, images=images).search == expected


def test_search_threshold_and_override(identity_weights):
    assert runtime.choose_search(3, exhaustive_from=3) == CudnnSearch.EXHAUSTIVE
    rt = runtime.Runtime("cpu", 1, images=1, search="EXHAUSTIVE")
    assert rt.search is CudnnSearch.EXHAUSTIVE
    entry = manifest.load(identity_weights).models[0]
    _, providers = runtime.session_plan(entry, "cuda", search=CudnnSearch.HEURISTIC)
    assert providers[0][1]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert providers[0][1]["cudnn_conv_use_max_workspace"] == "1"


def test_fp16_variant_is_planned_on_cuda_unless_turned_off(tmp_path):
    folder = onnx_models.write_weights(tmp_path / "w",
                                       fp16_model=onnx_models.identity_model(4, fp16=True))
    entry = manifest.load(folder).models[0]
    assert runtime.session_plan(entry, "cuda")[0] == "all.fp16.onnx"
    assert runtime.session_plan(entry, "cuda", fp16=False)[0] == "all.onnx"
    assert runtime.session_plan(entry, "cpu")[0] == "all.onnx"
    assert not runtime.Runtime("cpu", 1)._wants_fp16(entry)
    assert not runtime.Runtime("cuda", 1, fp16=False)._wants_fp16(entry)
    assert runtime.Runtime("cuda", 1)._wants_fp16(entry)


@pytest.mark.parametrize(("free", "models", "expected"), [
    (16 * 2**30, 4, 16),     # 8 GiB / 4 models / (2048 B × 256²) = 16
    (16 * 2**30, 1, 64),     # 64 by the budget; also the cap
    (80 * 2**30, 1, 64),     # capped
    (2**20, 4, 1),           # at least one tile
    (None, 4, 4),            # not on CUDA or unknown: the CPU default
])
def test_tile_batch_from_free_memory(free, models, expected):
    assert runtime.tile_batch_size(free, 256, models=models) == expected


def test_tile_batch_scales_with_patch_area():
    free = 64 * 2**30
    assert runtime.tile_batch_size(free, 512, models=4, bytes_per_pixel=2048) == 16
    assert runtime.tile_batch_size(free, 1024, models=4, bytes_per_pixel=2048) == 4


def test_without_a_gpu_memory_is_unknown_and_the_batch_is_the_default(identity_weights):
    assert runtime.gpu_memory() is None  # this machine has no GPU
    entries = manifest.load(identity_weights).models
    assert process.auto_batch_size("cpu", entries) == runtime.DEFAULT_BATCH
    proc, device = process.build(manifest.load(identity_weights), ["nucleus"], device="cpu",
                                 threads=1)
    assert device == "cpu" and proc.predictor.batch_size == runtime.DEFAULT_BATCH


def conv_model(folder, bind):
    w = onnx_models.write_weights(folder, onnx_models.conv_model(4), name="conv")
    entry = manifest.load(w).models[0]
    return runtime.Runtime("cpu", 1, bind=bind).model(entry, w)


def test_bound_buffers_give_plain_results_and_are_reused(tmp_path):
    plain, bound = conv_model(tmp_path / "a", False), conv_model(tmp_path / "b", True)
    assert not plain.bind and bound.bind
    rng = np.random.default_rng(0)
    batches = [rng.random((2, 1, 32, 40), dtype=np.float32) for _ in range(3)]
    results = [bound(b) for b in batches]
    for batch, result in zip(batches, results, strict=True):
        # earlier results survive later batches: the kept output buffer is copied out
        np.testing.assert_array_equal(result, plain(batch))
    assert bound.bound_shapes == [(2, 1, 32, 40)]  # one buffer set for the three batches
    first_binding = bound._bound[(2, 1, 32, 40)]
    bound(batches[0])
    assert bound._bound[(2, 1, 32, 40)] is first_binding


def test_bound_buffers_are_kept_for_a_few_shapes_only(tmp_path):
    bound = conv_model(tmp_path / "b", True)
    shapes = [(1, 1, 16, 16 + 8 * i) for i in range(runtime.BOUND_SHAPES + 2)]
    for shape in shapes:
        out = bound(np.ones(shape, np.float32))
        assert out.shape == (shape[0], 4, *shape[2:])
    assert bound.bound_shapes == shapes[-runtime.BOUND_SHAPES:]


def test_fp16_error_is_the_largest_difference_over_the_range():
    tile = runtime.probe_tile(64)
    assert tile.shape == (1, 1, 64, 64) and 0 <= tile.min() and tile.max() <= 1
    error = runtime.fp16_error(lambda x: x, lambda x: 1.01 * x, tile)
    assert error == pytest.approx(0.01 * tile.max() / (tile.max() - tile.min()), rel=1e-5)
    assert runtime.fp16_error(lambda x: x, lambda x: x.astype(np.float16), tile) < 1e-3


class CpuHalf(runtime.Runtime):
    """A runtime that tries fp16 variants on the CPU, to run the parity check without a GPU."""

    def _wants_fp16(self, entry):
        return entry.fp16 is not None


@pytest.mark.parametrize(("variant", "used"), [
    (onnx_models.identity_model(4, fp16=True), "all.fp16.onnx"),   # fp16 rounding: ~5e-4
    (onnx_models.affine_model([1.02] * 4, [0.0] * 4), "all.onnx"),  # 2 % off: refused
])
def test_fp16_is_used_only_where_parity_holds(tmp_path, variant, used):
    folder = onnx_models.write_weights(tmp_path / "w", fp16_model=variant)
    entry = manifest.load(folder).models[0]
    said = []
    rt = CpuHalf("cpu", 1, report=said.append)
    model = rt.model(entry, folder)
    assert model.file.name == used
    error = rt.fp16_errors[entry.name]
    # what --resume records is what runs, not what the manifest offers
    assert process.precision(rt) == (
        "fp16" if used == "all.fp16.onnx" else "fp32")
    if used == "all.onnx":
        assert error > runtime.FP16_PARITY and len(said) == 1 and "fp32" in said[0]
    else:
        assert 0 < error <= runtime.FP16_PARITY and said == []
