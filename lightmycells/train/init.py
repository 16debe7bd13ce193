"""Start a run from trained weights (``init_from``): a checkpoint, or an exported ONNX model.

Two sources:

- a PyTorch checkpoint (``best.pt``/``last.pt`` of any run, or a bare state dict): every
  tensor whose name — after the optional ``prefix`` rule ``"SRC->DST"`` and without the
  ``module.`` of DDP — and shape match the new model's is loaded; the rest stay as
  initialised and are listed. This is how a fine-tuning run starts from a pretraining run.
- an exported ONNX file (``weights/nucleus.onnx``): the shipped models ship as ONNX, whose
  exporter folded each convolution's batch norm into the convolution. The graph's
  convolutions and batch norms are matched, in execution order and by shape, to the
  model's modules as a traced forward pass calls them; a folded pair is unfolded exactly
  (the convolution takes the folded weight, its batch norm becomes ``x + bias``: weight 1,
  running mean 0, running variance ``1 - eps``). In eval mode the model then computes what
  the ONNX file computes (tested to 1e-5 against ONNX Runtime). The batch statistics the
  folding discarded are gone, so fine-tune such a model with ``model.freeze_norm`` (batch
  norms kept in eval mode), which is also what few-image fine-tuning wants.

Either way the load is reported in one line: ``loaded N tensors, skipped M (names...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
NORM_TYPES = (nn.BatchNorm2d,)
_ONNX_CONV = {"Conv": nn.Conv2d, "ConvTranspose": nn.ConvTranspose2d}
_WRAPPERS = ("module.", "_orig_mod.")
#: Names listed in the log line before "and N more".
SHOWN_NAMES = 8


class InitError(ValueError):
    """``init_from`` names a source that cannot initialise this model."""


def load_initial(model: nn.Module, source: str | Path, *, prefix: str | None = None,
                 log: Callable[[str], None] = print) -> tuple[int, int]:
    """Initialise ``model`` from ``source`` (.pt checkpoint or .onnx); returns (loaded, skipped).

    Raises
    ------
    InitError
        The file is missing or unreadable, or nothing in it fits the model.
    """
    source = Path(source)
    if not source.is_file():
        raise InitError(f"init_from {source}: no such file")
    if source.suffix.lower() == ".onnx":
        if prefix:
            raise InitError(f"init_from {source}: a prefix rule applies to checkpoints only")
        loaded, skipped = _from_onnx(model, source)
    else:
        loaded, skipped = _from_checkpoint(model, source, prefix)
    if loaded == 0:
        raise InitError(f"init_from {source}: no tensor fits the model "
                        f"({len(skipped)} in the file, none with a matching name and shape)")
    shown = ", ".join(skipped[:SHOWN_NAMES])
    more = f" and {len(skipped) - SHOWN_NAMES} more" if len(skipped) > SHOWN_NAMES else ""
    log(f"[train] init_from {source}: loaded {loaded} tensors, skipped {len(skipped)}"
        + (f" ({shown}{more})" if skipped else ""))
    return loaded, len(skipped)


def _from_checkpoint(model: nn.Module, path: Path, prefix: str | None) -> tuple[int, list[str]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle and zip errors come in many types
        raise InitError(f"init_from {path}: not a readable checkpoint "
                        f"({type(exc).__name__}: {exc})") from None
    tensors = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(tensors, dict):
        raise InitError(f"init_from {path}: expected a checkpoint with a 'model' state dict")
    src, dst = _prefix_rule(prefix)
    own = model.state_dict()
    update, skipped = {}, []
    for name, tensor in tensors.items():
        for wrapper in _WRAPPERS:
            name = name.removeprefix(wrapper)
        if src is not None and dst is not None and name.startswith(src):
            name = dst + name[len(src):]
        if name in own and torch.is_tensor(tensor) and own[name].shape == tensor.shape:
            update[name] = tensor
        else:
            skipped.append(name)
    model.load_state_dict(update, strict=False)
    return len(update), skipped


def _prefix_rule(prefix: str | None) -> tuple[str | None, str | None]:
    if not prefix:
        return None, None
    if "->" not in prefix:
        raise InitError(f"init_prefix {prefix!r}: expected 'SRC->DST', e.g. 'encoder.->encoder.'")
    src, dst = prefix.split("->", 1)
    return src.strip(), dst.strip()


def _call_order(model: nn.Module) -> list[nn.Module]:
    """Convolutions and batch norms in the order one forward pass calls them."""
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, *_: calls.append(m))
             for m in model.modules() if isinstance(m, CONV_TYPES + NORM_TYPES)]
    size = 2 ** (getattr(model, "depth", 4) + 1)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return calls


def _from_onnx(model: nn.Module, path: Path) -> tuple[int, list[str]]:
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # protobuf decode errors
        raise InitError(f"init_from {path}: not a readable ONNX model ({exc})") from None
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in (*_ONNX_CONV, "BatchNormalization")]
    calls = _call_order(model)
    loaded, i, j = 0, 0, 0
    while i < len(calls) and j < len(nodes):
        module, node = calls[i], nodes[j]
        params = [arrays.get(name) for name in node.input[1:]]
        if isinstance(module, CONV_TYPES) and type(module) is _ONNX_CONV.get(node.op_type):
            norm = calls[i + 1] if i + 1 < len(calls) else None
            fused = isinstance(norm, NORM_TYPES) and not (
                j + 1 < len(nodes) and nodes[j + 1].op_type == "BatchNormalization")
            loaded += _set_conv(module, params, norm if fused else None, path, node.name)
            i, j = i + (2 if fused else 1), j + 1
        elif isinstance(module, NORM_TYPES) and node.op_type == "BatchNormalization":
            loaded += _set_norm(module, params, path, node.name)
            i, j = i + 1, j + 1
        else:
            raise InitError(f"init_from {path}: ONNX node {node.name} ({node.op_type}) does not "
                            f"match the model's {type(module).__name__} at the same place: "
                            "was it exported from this architecture and config?")
    if i != len(calls) or j != len(nodes):
        raise InitError(f"init_from {path}: the model has {len(calls)} convolutions and "
                        f"norms, the ONNX graph {len(nodes)} — another architecture or config")
    return loaded, []


def _tensor(array: np.ndarray | None, like: torch.Tensor, path: Path, what: str) -> torch.Tensor:
    if array is None or tuple(array.shape) != tuple(like.shape):
        got = "a computed input" if array is None else tuple(array.shape)
        raise InitError(f"init_from {path}: {what} has shape {got}, the model "
                        f"{tuple(like.shape)}: another architecture or config")
    return torch.from_numpy(np.array(array, copy=True)).to(like.dtype)


def _set_conv(conv: nn.Module, params: list[np.ndarray | None], norm: nn.Module | None,
              path: Path, name: str) -> int:
    with torch.no_grad():
        conv.weight.copy_(_tensor(params[0], conv.weight, path, f"{name} weight"))
        bias = params[1] if len(params) > 1 else None
        if norm is None:
            if conv.bias is not None and bias is not None:
                conv.bias.copy_(_tensor(bias, conv.bias, path, f"{name} bias"))
            return 1 + (conv.bias is not None)
        # Unfold: BN(x) = (x - 0) / sqrt((1 - eps) + eps) * 1 + b = x + b, exactly.
        folded = np.zeros(conv.weight.shape[1 if isinstance(conv, nn.ConvTranspose2d) else 0],
                          np.float32) if bias is None else bias
        if conv.bias is not None:
            conv.bias.zero_()
        norm.weight.fill_(1.0)
        norm.bias.copy_(_tensor(folded, norm.bias, path, f"{name} bias"))
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0 - norm.eps)
        return 2


def _set_norm(norm: nn.Module, params: list[np.ndarray | None], path: Path, name: str) -> int:
    with torch.no_grad():
        for tensor, array in zip((norm.weight, norm.bias, norm.running_mean, norm.running_var),
                                 params, strict=True):
            tensor.copy_(_tensor(array, tensor, path, f"{name} {tuple(tensor.shape)}"))
    return 4
