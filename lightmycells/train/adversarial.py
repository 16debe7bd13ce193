"""Conditional PatchGAN training (seed 003): one discriminator per output organelle.

The :class:`~lightmycells.train.loop.Trainer` holds an :class:`Adversary` when the config
has a ``gan`` section with a positive weight, and calls it in each optimisation step, after
the generator's forward pass and before its update (the pix2pix order):

1. :meth:`Adversary.discriminator_step` updates every discriminator D_i on
   ``(input, target_i)`` as real and ``(input, prediction_i.detach())`` as fake, each sample
   weighted by its mask: a sample without organelle i's target has weight 0 and, because the
   discriminators normalise per sample (instance norm), contributes exactly nothing. A D_i
   with no such sample in the whole step (all processes) gets no update at all (its
   gradients are set to None, which Adam skips).
2. :meth:`Adversary.generator_term` is the generator's adversarial loss, with the
   discriminators frozen (no gradient reaches them), masked the same way and averaged over
   the present (sample, organelle) entries like every other term.

Both start at ``gan.start_step`` (an L1-only warm-up before). The discriminators and their
optimiser are checkpointed (:meth:`state_dict`), so exact resume holds; under DDP each
discriminator is wrapped (every D runs on every sample, so all processes take the same path).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from lightmycells.train.config import GanConfig, GanMode, TrainConfig
from lightmycells.train.models.patchgan import PatchGAN

#: Log columns an adversary fills.
COLUMNS = ("d_loss", "g_adv", "d_acc")

Criterion = Callable[[torch.Tensor, bool], torch.Tensor]


def _vanilla(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def _lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return (logits - 1.0) ** 2 if real else logits**2


#: ``gan.mode`` → per-patch loss of logits judged real or fake.
CRITERIA: dict[GanMode, Criterion] = {GanMode.VANILLA: _vanilla, GanMode.LSGAN: _lsgan}
#: Logit above which a patch counts as judged real (for the accuracy column).
REAL_ABOVE = {GanMode.VANILLA: 0.0, GanMode.LSGAN: 0.5}


def per_sample(criterion: Criterion, logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Mean patch loss per sample: ``(B, 1, h, w)`` logits → ``(B,)``."""
    return criterion(logits, real).flatten(1).mean(1)


def _weighted(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


class Adversary:
    """The discriminators of one run, their optimiser and the two adversarial steps.

    Parameters
    ----------
    cfg:
        The ``gan`` section.
    organelles:
        Number of output organelles (one discriminator each).
    device:
        Where the discriminators live.
    """

    def __init__(self, cfg: GanConfig, organelles: int, device: torch.device) -> None:
        self.cfg = cfg
        self.criterion = CRITERIA[cfg.mode]
        self.discriminators = torch.nn.ModuleList(
            PatchGAN(2, width=cfg.width, layers=cfg.layers, norm=cfg.norm)
            for _ in range(organelles)
        ).to(device)
        self.optimizer = torch.optim.Adam(self.discriminators.parameters(), lr=cfg.lr,
                                          betas=cfg.betas)
        self.wrapped: list[torch.nn.Module] = list(self.discriminators)

    def distribute(self) -> None:
        """Wrap every discriminator in DDP (call once, after resuming)."""
        self.wrapped = [DistributedDataParallel(d) for d in self.discriminators]

    def active(self, step: int) -> bool:
        """True from ``gan.start_step`` on (``step`` counts steps already taken)."""
        return step >= self.cfg.start_step

    def discriminator_step(self, x: torch.Tensor, pred: torch.Tensor, y: torch.Tensor,
                           mask: torch.Tensor) -> dict[str, float]:
        """Update every D_i on the samples with organelle i's target; loss and accuracy.

        ``pred`` is the generator's output (detached here), ``y`` the targets, ``mask``
        ``(B, C)`` their availability.
        """
        pred, y, mask = pred.detach().float(), y.float(), mask.float()
        self.optimizer.zero_grad(set_to_none=True)
        total, correct, counted = pred.new_zeros(()), 0.0, 0.0
        for i, disc in enumerate(self.wrapped):
            weights = mask[:, i]
            # one forward for real and fake (DDP expects one forward per backward)
            real, fake = disc(torch.cat([torch.cat([x, y[:, i : i + 1]], 1),
                                         torch.cat([x, pred[:, i : i + 1]], 1)])).chunk(2)
            loss = 0.5 * (per_sample(self.criterion, real, True)
                          + per_sample(self.criterion, fake, False))
            total = total + _weighted(loss, weights)
            threshold = REAL_ABOVE[self.cfg.mode]
            hits = ((real > threshold).flatten(1).float().mean(1)
                    + (fake <= threshold).flatten(1).float().mean(1)) / 2
            correct += float((hits * weights).sum())
            counted += float(weights.sum())
        total.backward()
        self._skip_absent(mask)
        self.optimizer.step()
        present = max(1.0, float((mask.sum(0) > 0).sum()))
        return {"d_loss": float(total.detach()) / present,
                "d_acc": correct / counted if counted else float("nan")}

    def _skip_absent(self, mask: torch.Tensor) -> None:
        """No update (gradient None, skipped by Adam) for a D without samples anywhere."""
        counts = mask.sum(0)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
        for disc, count in zip(self.discriminators, counts, strict=True):
            if count == 0:
                for p in disc.parameters():
                    p.grad = None

    def generator_term(self, x: torch.Tensor, pred: torch.Tensor,
                       mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's adversarial loss (discriminators frozen) and its value to log."""
        self.discriminators.requires_grad_(False)
        try:
            values, weights = [], []
            for i, disc in enumerate(self.discriminators):  # unwrapped: nothing to sync
                logits = disc(torch.cat([x, pred[:, i : i + 1].float()], 1))
                values.append(per_sample(self.criterion, logits, True))
                weights.append(mask[:, i].float())
            term = _weighted(torch.stack(values, 1), torch.stack(weights, 1))
        finally:
            self.discriminators.requires_grad_(True)
        return term, {"g_adv": float(term.detach())}

    def state_dict(self) -> dict[str, object]:
        """Discriminators and their optimiser, for checkpoints."""
        return {"discriminators": self.discriminators.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.discriminators.load_state_dict(state["discriminators"])
        self.optimizer.load_state_dict(state["optimizer"])


def build_adversary(cfg: TrainConfig, organelles: int, device: torch.device) -> Adversary | None:
    """The run's adversary, or None without a ``gan`` section or with weight 0."""
    if cfg.gan is None or cfg.gan.weight == 0:
        return None
    return Adversary(cfg.gan, organelles, device)
