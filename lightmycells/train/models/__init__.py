"""Architecture registry: a config's ``model.name`` → a constructor.

Every entry maps ``(B, 1, H, W)`` to ``(B, C, H, W)`` for any ``H, W`` that are multiples of
``ModelConfig.size_multiple()`` (``2**depth``; a UNETR's token), so one ONNX file serves every
tile size.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lightmycells.train.config import Gate, ModelConfig, UnetrConfig
from lightmycells.train.models.attresunet import AttentionResUNet
from lightmycells.train.models.runet import RUNet
from lightmycells.train.models.unetr import UNETR

ModelFactory = Callable[[ModelConfig, int], nn.Module]

MODELS: dict[str, ModelFactory] = {
    "runet": lambda cfg, out_channels: RUNet(
        out_channels=out_channels, depth=cfg.depth, width=cfg.width, blocks=cfg.blocks,
        norm=cfg.norm,
    ),
    "attresunet": lambda cfg, out_channels: AttentionResUNet(
        out_channels=out_channels, depth=cfg.depth, width=cfg.width, blocks=cfg.blocks,
        norm=cfg.norm, gate=cfg.gate or Gate.OKTAY,
    ),
    "unetr": lambda cfg, out_channels: UNETR(
        out_channels=out_channels, **(cfg.unetr or UnetrConfig()).model_dump(),
    ),
}


def build_model(cfg: ModelConfig, out_channels: int) -> nn.Module:
    """Build the registered model ``cfg.name`` with ``out_channels`` outputs.

    Raises
    ------
    NotImplementedError
        For a name that is not in :data:`MODELS`.
    """
    try:
        factory = MODELS[cfg.name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise NotImplementedError(
            f"model '{cfg.name}' is not registered (known: {known})"
        ) from None
    return factory(cfg, out_channels)
