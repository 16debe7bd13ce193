import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lightmycells.engine import manifest, runtime
from tests import onnx_models

CUDA_WORKS = runtime.cuda_status()[0]
no_gpu = pytest.mark.skipif(CUDA_WORKS, reason="tests the fallback; this machine has CUDA")


def test_probe_model_is_the_documented_convolution():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "probe", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="")
    model.ir_version = 7
    onnx.checker.check_model(model)
    # a convolution, so that a CUDA probe loads cuDNN (an element-wise op does not)
    assert model.SerializeToString() == runtime.PROBE_MODEL
    session = ort.InferenceSession(runtime.PROBE_MODEL, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.ones((1, 1, 8, 8), np.float32)})
    assert out[0, 0, 0, 0] == 4 and out[0, 0, 3, 3] == 9 and out.sum() == runtime.PROBE_SUM


def test_cpu_is_cpu_and_unknown_device_is_rejected():
    assert runtime.select_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="'tpu'"):
        runtime.select_device("tpu")
    with pytest.raises(ValueError, match="select_device"):
        runtime.Runtime("auto")


@no_gpu
def test_auto_falls_back_to_cpu_with_one_line_saying_why():
    lines = []
    assert runtime.select_device("auto", report=lines.append) == "cpu"
    assert len(lines) == 1 and "CUDA is unavailable" in lines[0] and "\n" not in lines[0]
    ok, why = runtime.cuda_status()
    assert not ok and why in lines[0]


@no_gpu
def test_cuda_requested_but_unavailable_is_an_error_not_a_cpu_run(identity_weights):
    with pytest.raises(runtime.DeviceError, match="cuda requested, but CUDA is unavailable"):
        runtime.select_device("cuda")
    entry = manifest.load(identity_weights).models[0]
    with pytest.raises(runtime.DeviceError, match="fell back"):
        runtime.Runtime("cuda").model(entry, identity_weights)
    with pytest.raises(runtime.DeviceError, match="fell back"):  # the run's test, before images
        runtime.Runtime("cuda").warm_up(entry, identity_weights)


def test_cuda_plan_uses_fp16_variant_and_fixed_shape_cudnn_search(tmp_path):
    folder = onnx_models.write_weights(tmp_path / "w",
                                       fp16_model=onnx_models.identity_model(4, fp16=True))
    entry = manifest.load(folder).models[0]
    file, providers = runtime.session_plan(entry, "cuda")
    assert file == "all.fp16.onnx"
    assert providers[0][0] == "CUDAExecutionProvider"
    assert providers[0][1]["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert runtime.session_plan(entry, "cpu") == ("all.onnx", ["CPUExecutionProvider"])


def test_threads_follow_the_affinity_mask():
    rt = runtime.Runtime("cpu")
    assert 1 <= rt.threads == runtime.available_cpus() <= len(os.sched_getaffinity(0))
    assert rt.options().intra_op_num_threads == rt.threads
    assert runtime.Runtime("cpu", threads=1).options().intra_op_num_threads == 1


def test_sessions_are_created_once_and_run_batches(identity_weights):
    m = manifest.load(identity_weights)
    rt = runtime.Runtime("cpu", threads=1)
    model = rt.model(m.models[0], identity_weights)
    assert rt.model(m.models[0], identity_weights) is model
    x = np.random.default_rng(0).random((3, 1, 40, 24), dtype=np.float32)
    y = model(x)
    assert y.shape == (3, 4, 40, 24) and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.repeat(x, 4, axis=1))
    assert model.fixed_tile is None
    # one CPU arena for all sessions, so four models do not each keep their peak memory
    assert rt.options().get_session_config_entry("session.use_env_allocators") == "1"


def test_fp16_model_io_is_cast(tmp_path):
    entry = onnx_models.model_entry(tmp_path, "h", onnx_models.identity_model(1, fp16=True),
                                    organelles=["actin"])
    folder = onnx_models.write_manifest(tmp_path, [entry])
    model = runtime.Runtime("cpu", 1).model(manifest.load(folder).models[0], folder)
    y = model(np.full((1, 1, 8, 8), 0.1, np.float32))
    assert y.dtype == np.float32 and np.allclose(y, 0.1, atol=1e-3)


def test_channel_count_mismatch_names_the_model(tmp_path):
    entry = onnx_models.model_entry(tmp_path, "two", onnx_models.identity_model(2),
                                    organelles=["nucleus"])
    folder = onnx_models.write_manifest(tmp_path, [entry])
    model = runtime.Runtime("cpu", 1).model(manifest.load(folder).models[0], folder)
    with pytest.raises(ValueError, match="'two'.*implies"):
        model(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(np.zeros((1, 2, 8, 8), np.float32))


def test_unloadable_model_file_is_named(identity_weights):
    entry = manifest.load(identity_weights).models[0]
    (identity_weights / "all.onnx").write_bytes(b"not onnx")
    with pytest.raises(RuntimeError, match="all.onnx"):
        runtime.Runtime("cpu", 1).model(entry, identity_weights)


def test_warm_up_runs_one_tile_and_names_a_model_that_fails_it(tmp_path):
    good = onnx_models.write_weights(tmp_path / "good", onnx_models.unet_model(4), name="unet",
                                     patch=32)
    rt = runtime.Runtime("cpu", 1)
    model = rt.warm_up(manifest.load(good).models[0], good)
    assert model is rt.model(manifest.load(good).models[0], good)  # the session is kept
    # a UNet of depth 2 needs sizes divisible by 4: a manifest patch of 30 fails its test run
    bad = onnx_models.write_weights(tmp_path / "bad", onnx_models.unet_model(4), name="unet",
                                    patch=30)
    with pytest.raises(runtime.ModelError) as error:
        runtime.Runtime("cpu", 1).warm_up(manifest.load(bad).models[0], bad)
    message = str(error.value)
    assert message.startswith(str(bad / "unet.onnx")) and "30x30 tile" in message
    assert "\n" not in message
