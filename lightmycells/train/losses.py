"""Loss terms, each masked by target availability, and their weighted sum.

Every term first reduces to one value per (sample, channel), shape ``(B, C)``, then averages
over the entries whose target exists (``mask == 1``). A missing target therefore contributes
exactly nothing, and its gradient is exactly zero: terms keep their denominators away from
zero so the masked entries stay finite (0 · finite = 0, never 0 · NaN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lightmycells.train.config import LossConfig

#: Keeps variances and norms off zero (constant or all-zero placeholder targets).
EPS = 1e-6
#: SSIM constants for images normalised to roughly [0, 1] (data range 1).
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5

PerChannel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2)  # (B, C, H*W)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per (sample, channel): ``(B, C, H, W)`` → ``(B, C)``."""
    return _flat((pred - target) ** 2).mean(-1)


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per (sample, channel)."""
    return _flat((pred - target).abs()).mean(-1)


#: Seed 003's per-pixel weight of a target outside its own [p_low, p_high] range.
OUT_OF_RANGE_WEIGHT = 0.1


def l1_weighted(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Seed 003's adaptive L1 per (sample, channel): ``mean(M · |pred − target|)``.

    ``M`` is computed per pixel: 1 where the target lies inside its own [p2, p99.8] range,
    which after the project's percentile normalisation is the interval [0, 1], else
    :data:`OUT_OF_RANGE_WEIGHT` (the seed's public code reduced the L1 to a scalar before
    weighting, so its weighting did nothing; here it weights every pixel).
    """
    inside = (target >= 0) & (target <= 1)
    weight = torch.where(inside, 1.0, OUT_OF_RANGE_WEIGHT).to(pred.dtype)
    return _flat(weight * (pred - target).abs()).mean(-1)


def pearson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - r`` with r the Pearson correlation per (sample, channel)."""
    p = _flat(pred)
    t = _flat(target)
    p = p - p.mean(-1, keepdim=True)
    t = t - t.mean(-1, keepdim=True)
    r = (p * t).mean(-1) / torch.sqrt(p.square().mean(-1) * t.square().mean(-1) + EPS)
    return 1.0 - r


def cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine distance ``1 - <p, t> / (|p| |t|)`` per (sample, channel), uncentred."""
    p = _flat(pred)
    t = _flat(target)
    cos = (p * t).sum(-1) / torch.sqrt(p.square().sum(-1) * t.square().sum(-1) + EPS)
    return 1.0 - cos


def _gaussian_window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    window = g[:, None] * g[None, :]  # (win, win)
    return window.expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` per (sample, channel), Gaussian window 11 / σ 1.5, valid region only."""
    channels = pred.shape[1]
    window = _gaussian_window(channels, pred.device, pred.dtype)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)  # (B, C, H-10, W-10)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    num = (2 * mu_p * mu_t + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_p**2 + mu_t**2 + SSIM_C1) * (var_p + var_t + SSIM_C2)
    return 1.0 - _flat(num / den).mean(-1)


#: Loss config key → per-(sample, channel) term.
TERMS: dict[str, PerChannel] = {
    "mse": mse,
    "ssim": ssim,
    "pearson": pearson,
    "cosine": cosine,
    "l1": l1,
    "l1_weighted": l1_weighted,
}


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, C) over entries with ``mask`` (B, C) = 1; 0 if none."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class CombinedLoss(torch.nn.Module):
    """Weighted sum of the configured terms, each masked by target availability.

    Parameters
    ----------
    cfg:
        Term weights; zero-weight terms are not computed.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.weights = {name: w for name, w in cfg.model_dump().items() if w > 0}

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the total loss and each term's (unweighted) value for logging.

        ``pred`` and ``target`` are ``(B, C, H, W)``; ``mask`` is ``(B, C)``.
        """
        pred = pred.float()  # SSIM's small constants need float32 under AMP
        total = pred.new_zeros(())
        parts: dict[str, float] = {}
        for name, weight in self.weights.items():
            value = masked_mean(TERMS[name](pred, target), mask)
            total = total + weight * value
            parts[name] = float(value.detach())
        return total, parts
