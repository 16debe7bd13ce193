"""Architecture registry: a config's ``model.name`` → a constructor.

Every entry maps ``(B, 1, H, W)`` to ``(B, C, H, W)`` for any ``H, W`` that are multiples of
``ModelConfig.size_multiple()`` (``2**depth``; a UNETR's token), so one ONNX file serves every
tile size.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lightmycells.train.config import Condition, Decoders, Gate, ModelConfig, UnetrConfig
from lightmycells.train.models.attresunet import AttentionResUNet
from lightmycells.train.models.resgen import ResGenerator
from lightmycells.train.models.runet import RUNet
from lightmycells.train.models.unetr import UNETR
from lightmycells.vocab import MODALITIES

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
    # seed 003's pix2pix generator: depth = its down-samplings, blocks at the bottom
    "resgen": lambda cfg, out_channels: ResGenerator(
        out_channels, width=cfg.width, downs=cfg.depth, blocks=cfg.blocks,
        per_organelle=(cfg.decoders or Decoders.PER_ORGANELLE) == Decoders.PER_ORGANELLE,
        norm=cfg.norm, dropout=cfg.dropout,
        codes=len(MODALITIES) if cfg.condition == Condition.MODALITY else 0,
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
