"""The training loop: AdamW, warm-up + cosine, clipping, AMP on CUDA, DDP, exact resume.

Validation runs on whole images through the container's own tiler
(:func:`lightmycells.engine.tiling.predict_tiled`) after the container's own input normalisation
(and, with ``data.resample_um``, at the training pixel size),
scored with the challenge metrics (:func:`lightmycells.eval.metrics.score`), so the number that
picks the best checkpoint is the number the container would get.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains on its own share of each step's
samples (DDP: gloo on CPU, NCCL on CUDA); rank 0 validates and writes files.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from lightmycells.engine import tiling
from lightmycells.eval import metrics
from lightmycells.io.atomic import replacing
from lightmycells.train import data, modality
from lightmycells.train.adversarial import COLUMNS as ADVERSARY_COLUMNS
from lightmycells.train.adversarial import build_adversary
from lightmycells.train.config import RunKind, TrainConfig, dump_config
from lightmycells.train.init import load_initial
from lightmycells.train.losses import CombinedLoss
from lightmycells.train.mae import MaskedAutoencoding
from lightmycells.train.models import build_model
from lightmycells.train.pairs import PairsIndex, read_pairs
from lightmycells.vocab import METRICS, Organelle

LAST = "last.pt"
BEST = "best.pt"
LOG = "log.csv"
CURVE = "curve.png"
#: Metrics whose mean over images and organelles can serve as the validation score.
MONITORED = {"pcc": ("PCC",), "ssim": ("SSIM",), "pcc+ssim": ("PCC", "SSIM")}


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the process that validates and writes files."""
        return self.rank == 0


@dataclass(frozen=True)
class TrainResult:
    """How a run ended."""

    out: Path
    step: int
    best_score: float | None
    stopped: str
    last_loss: float | None


class StepBatches(Sampler[list[int]]):
    """Batches of sample indices: step ``s`` on rank ``r`` draws ``B`` indices of its own.

    The indices of a step do not depend on where the run started, so a resumed run and a
    DDP run see exactly the samples of an uninterrupted run.
    """

    def __init__(self, start: int, steps: int, batch: int, ctx: Distributed) -> None:
        self.start, self.steps, self.batch, self.ctx = start, steps, batch, ctx

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            first = (step * self.ctx.world + self.ctx.rank) * self.batch
            yield list(range(first, first + self.batch))


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _device(kind: str, ctx: Distributed) -> torch.device:
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", ctx.rank)))
    return torch.device("cpu")


def _init_distributed(device_kind: str) -> Distributed:
    """Join the process group torchrun describes in the environment (no-op otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        cuda = device_kind != "cpu" and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def set_training(model: torch.nn.Module, *, freeze_norm: bool) -> None:
    """Training mode, with batch norms kept in eval mode (fixed statistics) when frozen."""
    model.train()
    if freeze_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


class Validator:
    """Whole-image validation on held-out fields of view, through the container's tiler."""

    def __init__(self, cfg: TrainConfig, fovs: Sequence[data.FieldOfView],
                 organelles: Sequence[Organelle], store: data.ImageStore) -> None:
        self.cfg, self.fovs, self.organelles, self.store = cfg, list(fovs), organelles, store

    def columns(self) -> list[str]:
        """CSV columns this validator fills."""
        cols = ["val_score"]
        for organelle in self.organelles:
            cols += [f"val_{organelle}_{m}" for m in METRICS[organelle]]
        return cols

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Mean challenge metrics per organelle, and ``val_score`` (the monitored mean)."""
        modes = {m: m.training for m in model.modules()}  # frozen norms stay frozen after
        model.eval()

        scores: dict[str, list[float]] = {}
        for fov in self.fovs:
            cond = modality.condition(self.cfg, fov.modality, device)  # () unless dynamic

            def predict(tiles: np.ndarray, cond: tuple = cond) -> np.ndarray:
                # (B, 1, T, T) → (B, C, T, T)
                return model(torch.from_numpy(tiles).to(device), *cond).float().cpu().numpy()

            # the container's normalisation (statistics of the image as read), then its
            # resampling when data.resample_um is set (the store resamples)
            plane = self.store.get(data.input_source(fov, self.cfg.data.zstack), fov.pixel_size_um)
            # rows scored from here: the held-out bottom region, or the whole image
            held = (data.training_rows(self.cfg.data, plane.pixels.shape[0])
                    if self.cfg.data.split == "region" else 0)
            x = plane.normalized()[held:]
            pred = tiling.predict_tiled(
                x, predict, tile=self.cfg.val.tile, overlap=self.cfg.val.overlap,
                batch_size=self.cfg.val.batch_size,
            )  # (C, Y, X)
            for c, organelle in enumerate(self.organelles):
                if organelle not in fov.targets:
                    continue
                truth = self.store.get(fov.targets[organelle], fov.pixel_size_um).pixels[held:]
                for name, value in metrics.score(pred[c], truth, organelle).items():
                    scores.setdefault(f"val_{organelle}_{name}", []).append(float(value))
        for module, training in modes.items():
            module.training = training
        out = {key: float(np.mean(values)) for key, values in scores.items()}
        monitored = [
            v for key, v in out.items() if key.rsplit("_", 1)[-1] in MONITORED[self.cfg.val.monitor]
        ]
        out["val_score"] = float(np.mean(monitored)) if monitored else float("nan")
        return out


class CsvLog:
    """Append-only CSV of training and validation rows; truncated to a resumed step."""

    def __init__(self, path: Path, columns: list[str], resume_step: int) -> None:
        self.path, self.columns = path, columns
        rows = []
        if resume_step > 0 and path.exists():
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, restval="")
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in columns} for r in rows)

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (missing columns stay empty)."""
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.columns, restval="").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )

    def plot(self, out: Path) -> None:
        """Training loss and validation score against step, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with self.path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        train = [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss")]
        val = [(int(r["step"]), float(r["val_score"])) for r in rows if r.get("val_score")]
        fig, ax = plt.subplots(figsize=(7, 4))
        if train:
            ax.plot(*zip(*train, strict=True), lw=0.8, label="training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        if val:
            twin = ax.twinx()
            twin.plot(*zip(*val, strict=True), "o-", color="C1", label="validation score")
            twin.set_ylabel("validation score")
        fig.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)


def _save(path: Path, state: dict[str, Any]) -> None:
    with replacing(path) as tmp:
        torch.save(state, tmp)


def _training_pixel_size(cfg: TrainConfig, fovs: Sequence[data.FieldOfView]) -> float | None:
    """The pixel size (µm) the model learned at.

    ``data.resample_um`` when set, else the common pixel size of the training inputs, or None
    when they differ (by more than 1 %) or are unknown.
    """
    if cfg.data.resample_um is not None:
        return cfg.data.resample_um
    sizes = {f.pixel_size_um[1] if f.pixel_size_um else None for f in fovs}
    if None in sizes or not sizes:
        return None
    values = sorted(s for s in sizes if s is not None)
    return values[0] if values[-1] <= values[0] * 1.01 else None


def _agree(flag: bool, ctx: Distributed) -> bool:
    """True on every rank when rank 0 says so (keeps time-based stops in lock-step)."""
    if ctx.world == 1:
        return flag
    value = torch.tensor([1.0 if flag and ctx.main else 0.0])
    dist.broadcast(value, src=0)
    return bool(value.item())


def _select_fovs(
    cfg: TrainConfig, pairs: PairsIndex | None = None,
) -> tuple[list[data.FieldOfView], list[data.FieldOfView]]:
    """(training, validation) fields of view: indexed, range-filtered, split, with targets.

    ``pairs``: ``cfg.data.pairs`` already read (by ``lightmycells.finetune``), not read again.
    """
    fovs = (data.stored_fovs(cfg.data.store, cfg.data.modalities) if cfg.data.store
            else data.index_fovs(cfg.data.roots, cfg.data.modalities) if cfg.data.roots
            else [])
    if cfg.data.pairs is not None:
        pairs = pairs or read_pairs(cfg.data.pairs)
        fovs += [f for f in pairs.fovs if f.modality in cfg.data.modalities]
    if cfg.data.pixel_size_range_um is not None:
        fovs = data.in_pixel_range(fovs, *cfg.data.pixel_size_range_um)
    if cfg.data.split == "region":  # every image trains above its held-out bottom rows
        train_fovs, val_fovs = list(fovs), list(fovs)
    else:
        train_fovs, val_fovs = data.split_fovs(
            fovs, cfg.data.split, cfg.data.val_fraction, cfg.data.split_seed
        )
    organelles = list(cfg.data.organelles)
    val_fovs = data.with_targets(val_fovs, organelles)[: cfg.data.max_val_images]
    return data.with_targets(train_fovs, organelles), val_fovs


class Supervised:
    """The default run kind: transmitted light → organelles, challenge-metric validation.

    A run kind supplies what differs between kinds of run (fields of view, model, loss,
    dataset, validator); :class:`Trainer` does the rest the same way for all of them.
    """

    def __init__(self, cfg: TrainConfig, pairs: PairsIndex | None = None) -> None:
        self.cfg, self.pairs = cfg, pairs

    def fovs(self) -> tuple[list[data.FieldOfView], list[data.FieldOfView]]:
        """(training, validation) fields of view (see :func:`_select_fovs`)."""
        return _select_fovs(self.cfg, self.pairs)

    def model(self, out_channels: int) -> torch.nn.Module:
        """The registered architecture ``model.name``."""
        return build_model(self.cfg.model, out_channels)

    def loss(self) -> torch.nn.Module:
        """The combined loss of ``loss``."""
        return CombinedLoss(self.cfg.loss)

    @staticmethod
    def forward(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor,
                *cond: torch.Tensor) -> torch.Tensor:
        """The model on a batch.

        ``mask`` (the targets' availability) is the loss's; ``cond`` is the modality code of
        a conditioned model.
        """
        return model(x, *cond)

    def dataset(self, fovs: Sequence[data.FieldOfView], organelles: Sequence[Organelle],
                store: data.ImageStore, length: int) -> Dataset:
        """Augmented (input, targets, mask[, modality code]) patches."""
        return data.PatchDataset(fovs, organelles, self.cfg.data, seed=self.cfg.seed,
                                 length=length, store=store,
                                 codes=modality.conditioned(self.cfg))

    def validator(self, fovs: Sequence[data.FieldOfView], organelles: Sequence[Organelle],
                  store: data.ImageStore) -> Validator:
        """Whole-image validation through the container's tiler."""
        return Validator(self.cfg, fovs, organelles, store)


#: Run kinds (``TrainConfig.run_kind``) → their strategy.
RUN_KINDS: dict[RunKind, type] = {
    RunKind.SUPERVISED: Supervised,
    RunKind.MAE: MaskedAutoencoding,
}


class Trainer:
    """One run's model, optimiser, schedule, data and bookkeeping; :meth:`run` trains it."""

    def __init__(self, cfg: TrainConfig, pairs: PairsIndex | None = None) -> None:
        self.started = time.monotonic()
        self.cfg, self.out = cfg, Path(cfg.out)
        self.ctx = _init_distributed(cfg.device)
        self.device = _device(cfg.device, self.ctx)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.organelles = list(cfg.data.organelles)
        self.kind = RUN_KINDS[cfg.run_kind](cfg, pairs)
        self.train_fovs, self.val_fovs = self.kind.fovs()
        self.store = data.image_store(cfg.data)
        self.model = self.kind.model(len(self.organelles))
        if cfg.init_from is not None:
            load_initial(self.model, cfg.init_from, prefix=cfg.init_prefix)
        self.model = self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
            betas=cfg.optim.betas,
        )
        self.adversary = build_adversary(cfg, len(self.organelles), self.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, cfg.steps, cfg.optim.warmup_steps, cfg.optim.min_lr_ratio),
        )
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = self.kind.loss()
        self.state: dict[str, Any] = {
            "step": 0, "best_score": None, "bad_validations": 0, "elapsed_s": 0.0,
        }
        self._resume()
        self.start = int(self.state["step"])
        if self.ctx.world > 1:
            self.model = DistributedDataParallel(self.model)
            if self.adversary is not None:
                self.adversary.distribute()
        self.validator = self.kind.validator(self.val_fovs, self.organelles, self.store)
        self.pixel_size = _training_pixel_size(cfg, self.train_fovs)
        self.log = self._open_log()

    def _resume(self) -> None:
        """Load ``out/last.pt`` into model, optimiser, schedule and RNG when resuming."""
        if not (self.cfg.resume and (self.out / LAST).exists()):
            return
        checkpoint = torch.load(self.out / LAST, map_location="cpu", weights_only=False)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if self.adversary is not None:
            self.adversary.load_state_dict(checkpoint["adversary"])
        self.state.update({k: checkpoint[k] for k in self.state})

    def _open_log(self) -> CsvLog | None:
        """The run folder, its config and ``log.csv`` (rank 0 only)."""
        if not self.ctx.main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(dump_config(self.cfg))
        adversary = list(ADVERSARY_COLUMNS) if self.adversary is not None else []
        columns = ["step", "lr", "loss", *self.loss_fn.weights, *adversary, "seconds",
                   *self.validator.columns()]
        return CsvLog(self.out / LOG, columns, self.start)

    def checkpoint_state(self, step: int) -> dict[str, Any]:
        """Everything a checkpoint holds: states, step, scores, config, data provenance."""
        return {
            "model": _unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(), "step": step,
            "best_score": self.state["best_score"],
            "bad_validations": self.state["bad_validations"],
            "elapsed_s": self.state["elapsed_s"] + time.monotonic() - self.started,
            "config": self.cfg.model_dump(mode="json"),
            "organelles": [str(o) for o in self.organelles],
            "pixel_size_um": self.pixel_size,
            "train_fovs": len(self.train_fovs),
            "val_planes": [str(f.validation_plane()) for f in self.val_fovs],
            "modality_organelles": modality.organelles_by_modality(self.train_fovs,
                                                                   self.organelles),
            **({"adversary": self.adversary.state_dict()} if self.adversary else {}),
        }

    def validate(self, step: int) -> bool:
        """Validate on rank 0, keep the best checkpoint; True when patience is used up."""
        if not (self.ctx.main and self.val_fovs and self.log is not None):
            return False
        row = self.validator(_unwrap(self.model), self.device)
        self.log.write({"step": step, **row})
        score, state = row["val_score"], self.state
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["bad_validations"] = score, 0
            _save(self.out / BEST, self.checkpoint_state(step))
        else:
            state["bad_validations"] += 1
        print(f"[train] step {step}: validation score {score:.4f} "
              f"(best {state['best_score']:.4f})", flush=True)
        patience = self.cfg.val.patience
        return patience is not None and state["bad_validations"] >= patience

    def optimise(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                 *cond: torch.Tensor) -> tuple[float, dict[str, float]]:
        """One optimisation step on a batch; the loss and its parts.

        ``cond`` is the modality code of a conditioned model. With an adversary, its
        discriminators are updated between the generator's forward pass and its update.
        """
        x, y, mask = x.to(self.device), y.to(self.device), mask.to(self.device)
        cond = tuple(c.to(self.device) for c in cond)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            pred = self.kind.forward(self.model, x, mask, *cond)
        loss, parts = self.loss_fn(pred, y, mask)
        if self.adversary is not None and self.adversary.active(self.scheduler.last_epoch):
            parts |= self.adversary.discriminator_step(x, pred, y, mask)
            g_adv, adv_parts = self.adversary.generator_term(x, pred, mask)
            loss, parts = loss + self.adversary.cfg.weight * g_adv, parts | adv_parts
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach()), parts

    def record(self, step: int, loss: float, parts: dict[str, float]) -> None:
        """Log one training step (and print it now and then when there is no bar)."""
        if self.log is None:
            return
        elapsed = time.monotonic() - self.started
        self.log.write({"step": step, "lr": self.scheduler.get_last_lr()[0], "loss": loss,
                        **parts, "seconds": elapsed})
        if not self.cfg.progress and step % self.cfg.checkpoint_every == 0:
            print(f"[train] step {step}/{self.cfg.steps} loss {loss:.4f} ({elapsed:.0f} s)",
                  flush=True)

    def after_step(self, step: int, stop_at: int | None) -> str | None:
        """Validate and checkpoint after ``step``; why the run stops now, or None."""
        cfg, ctx = self.cfg, self.ctx
        done = step >= cfg.steps
        stopped = "steps" if done else None
        if not done and stop_at is not None and step >= stop_at:
            done, stopped = True, "stop_at"
        if _agree(step % cfg.val.every == 0 and not done and self.validate(step), ctx):
            return "early stopping"
        if ctx.main and step % cfg.checkpoint_every == 0 and not done:
            _save(self.out / LAST, self.checkpoint_state(step))
        if done:
            return stopped
        over_budget = cfg.max_minutes is not None and (
            time.monotonic() - self.started > 60 * cfg.max_minutes
        )
        return "time budget" if _agree(over_budget, ctx) else None

    def finish(self, step: int) -> None:
        """Final validation, ``last.pt`` (and ``best.pt`` without a validation set), curve."""
        if self.ctx.main and step > self.start:
            self.validate(step)
            _save(self.out / LAST, self.checkpoint_state(step))
            if not (self.out / BEST).exists():  # no validation set: the last state is the best
                _save(self.out / BEST, self.checkpoint_state(step))
            if self.log is not None:
                self.log.plot(self.out / CURVE)
        if self.ctx.world > 1:
            dist.barrier()

    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train from the current step to ``cfg.steps`` (or ``stop_at``, a budget, patience)."""
        cfg = self.cfg
        dataset = self.kind.dataset(self.train_fovs, self.organelles, self.store,
                                    cfg.steps * cfg.data.batch_size * self.ctx.world)
        loader = DataLoader(
            dataset, batch_sampler=StepBatches(self.start, cfg.steps, cfg.data.batch_size,
                                               self.ctx),
            num_workers=cfg.data.num_workers,
        )
        from tqdm import tqdm  # only the training side shows a progress bar

        bar = tqdm(total=cfg.steps, initial=self.start,
                   disable=not (cfg.progress and self.ctx.main),
                   desc=f"train {'+'.join(self.organelles)}", dynamic_ncols=True)
        set_training(self.model, freeze_norm=cfg.optim.freeze_norm)
        step, stopped, loss = self.start, "steps", None
        for batch in loader:
            loss, parts = self.optimise(*batch)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            self.record(step, loss, parts)
            if (why := self.after_step(step, stop_at)) is not None:
                stopped = why
                break
        bar.close()
        self.finish(step)
        return TrainResult(out=self.out, step=step, best_score=self.state["best_score"],
                           stopped=stopped, last_loss=loss)


def train(cfg: TrainConfig, *, stop_at: int | None = None,
          pairs: PairsIndex | None = None) -> TrainResult:
    """Run (or resume) one training run described by ``cfg``; see the module docstring.

    Parameters
    ----------
    cfg:
        The validated configuration.
    stop_at:
        Stop after this step with a checkpoint, as an interrupted run would (the learning-rate
        schedule still spans ``cfg.steps``); a later call with ``cfg.resume`` continues.
    pairs:
        ``cfg.data.pairs`` already read, so it is not read (and its problems not logged) twice.
    """
    return Trainer(cfg, pairs).run(stop_at)
