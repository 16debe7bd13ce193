"""The training loop: AdamW, warm-up + cosine, clipping, AMP on CUDA, DDP, exact resume.

Validation runs on whole images through the container's own tiler
(:func:`lightmycells.engine.tiling.predict_tiled`) after the container's own input normalisation,
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
from torch.utils.data import DataLoader, Sampler

from lightmycells.engine import normalize, tiling
from lightmycells.eval import metrics
from lightmycells.io.atomic import replacing
from lightmycells.train import data
from lightmycells.train.config import TrainConfig, dump_config
from lightmycells.train.losses import CombinedLoss
from lightmycells.train.models import build_model
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


class Validator:
    """Whole-image validation on held-out fields of view, through the container's tiler."""

    def __init__(self, cfg: TrainConfig, fovs: Sequence[data.FieldOfView],
                 organelles: Sequence[Organelle], store: data.ImageStore) -> None:
        self.cfg, self.fovs, self.organelles, self.store = cfg, list(fovs), organelles, store
        self.normalizer = normalize.Percentile(cfg.data.norm_low, cfg.data.norm_high)

    def columns(self) -> list[str]:
        """CSV columns this validator fills."""
        cols = ["val_score"]
        for organelle in self.organelles:
            cols += [f"val_{organelle}_{m}" for m in METRICS[organelle]]
        return cols

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Mean challenge metrics per organelle, and ``val_score`` (the monitored mean)."""
        model.eval()

        def predict(tiles: np.ndarray) -> np.ndarray:  # (B, 1, T, T) → (B, C, T, T)
            return model(torch.from_numpy(tiles).to(device)).float().cpu().numpy()

        scores: dict[str, list[float]] = {}
        for fov in self.fovs:
            raw = self.store.get(fov.validation_plane()).pixels
            x, _ = self.normalizer.before(raw)
            pred = tiling.predict_tiled(
                x, predict, tile=self.cfg.val.tile, overlap=self.cfg.val.overlap,
                batch_size=self.cfg.val.batch_size,
            )  # (C, Y, X)
            for c, organelle in enumerate(self.organelles):
                if organelle not in fov.targets:
                    continue
                truth = self.store.get(fov.targets[organelle]).pixels
                for name, value in metrics.score(pred[c], truth, organelle).items():
                    scores.setdefault(f"val_{organelle}_{name}", []).append(float(value))
        model.train()
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


def _training_pixel_size(fovs: Sequence[data.FieldOfView]) -> float | None:
    """The common pixel size (µm) of the training inputs, or None when they differ."""
    sizes = {data.pixel_size_um(f.planes[0]) for f in fovs}
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


def train(cfg: TrainConfig, *, stop_at: int | None = None) -> TrainResult:
    """Run (or resume) one training run described by ``cfg``; see the module docstring.

    Parameters
    ----------
    cfg:
        The validated configuration.
    stop_at:
        Stop after this step with a checkpoint, as an interrupted run would (the learning-rate
        schedule still spans ``cfg.steps``); a later call with ``cfg.resume`` continues.
    """
    started = time.monotonic()
    ctx = _init_distributed(cfg.device)
    device = _device(cfg.device, ctx)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    organelles = list(cfg.data.organelles)

    fovs = data.index_fovs(cfg.data.roots, cfg.data.modalities)
    train_fovs, val_fovs = data.split_fovs(
        fovs, cfg.data.split, cfg.data.val_fraction, cfg.data.split_seed
    )
    train_fovs = data.with_targets(train_fovs, organelles)
    val_fovs = data.with_targets(val_fovs, organelles)[: cfg.data.max_val_images]
    store = data.ImageStore(cfg.data.norm_low, cfg.data.norm_high, cfg.data.cache)
    dataset = data.PatchDataset(
        train_fovs, organelles, cfg.data, seed=cfg.seed,
        length=cfg.steps * cfg.data.batch_size * ctx.world, store=store,
    )

    model = build_model(cfg.model, len(organelles)).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, cfg.steps, cfg.optim.warmup_steps, cfg.optim.min_lr_ratio),
    )
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = CombinedLoss(cfg.loss)

    out = Path(cfg.out)
    state: dict[str, Any] = {"step": 0, "best_score": None, "bad_validations": 0, "elapsed_s": 0.0}
    if cfg.resume and (out / LAST).exists():
        checkpoint = torch.load(out / LAST, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        state.update({k: checkpoint[k] for k in state})
    start = int(state["step"])
    if ctx.world > 1:
        model = DistributedDataParallel(model)

    validator = Validator(cfg, val_fovs, organelles, store)
    log = None
    pixel_size = _training_pixel_size(train_fovs)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(cfg))
        columns = ["step", "lr", "loss", *loss_fn.weights, "seconds", *validator.columns()]
        log = CsvLog(out / LOG, columns, start)

    def checkpoint_state(step: int) -> dict[str, Any]:
        return {
            "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(), "step": step,
            "best_score": state["best_score"], "bad_validations": state["bad_validations"],
            "elapsed_s": state["elapsed_s"] + time.monotonic() - started,
            "config": cfg.model_dump(mode="json"), "organelles": [str(o) for o in organelles],
            "pixel_size_um": pixel_size,
            "train_fovs": len(train_fovs),
            "val_planes": [str(f.validation_plane()) for f in val_fovs],
        }

    def validate(step: int) -> bool:
        """Validate on rank 0, keep the best checkpoint; True when patience is used up."""
        if not (ctx.main and val_fovs and log is not None):
            return False
        row = validator(_unwrap(model), device)
        log.write({"step": step, **row})
        score = row["val_score"]
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["bad_validations"] = score, 0
            _save(out / BEST, checkpoint_state(step))
        else:
            state["bad_validations"] += 1
        print(f"[train] step {step}: validation score {score:.4f} "
              f"(best {state['best_score']:.4f})", flush=True)
        patience = cfg.val.patience
        return patience is not None and state["bad_validations"] >= patience

    loader = DataLoader(
        dataset, batch_sampler=StepBatches(start, cfg.steps, cfg.data.batch_size, ctx),
        num_workers=cfg.data.num_workers,
    )
    from tqdm import tqdm  # only the training side shows a progress bar

    bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and ctx.main),
               desc=f"train {'+'.join(organelles)}", dynamic_ncols=True)
    model.train()
    step, stopped, loss_value = start, "steps", None
    for x, y, mask in loader:
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            pred = model(x)
        loss, parts = loss_fn(pred, y, mask)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.optim.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        loss_value = float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if log is not None:
            log.write({"step": step, "lr": scheduler.get_last_lr()[0], "loss": loss_value,
                       **parts, "seconds": time.monotonic() - started})
            if not cfg.progress and step % cfg.checkpoint_every == 0:
                print(f"[train] step {step}/{cfg.steps} loss {loss_value:.4f} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
        done = step >= cfg.steps
        if not done and stop_at is not None and step >= stop_at:
            done, stopped = True, "stop_at"
        if _agree(step % cfg.val.every == 0 and not done and validate(step), ctx):
            stopped = "early stopping"
            break
        if ctx.main and step % cfg.checkpoint_every == 0 and not done:
            _save(out / LAST, checkpoint_state(step))
        over_budget = cfg.max_minutes is not None and (
            time.monotonic() - started > 60 * cfg.max_minutes
        )
        if done:
            break
        if _agree(over_budget, ctx):
            stopped = "time budget"
            break
    bar.close()
    if ctx.main and step > start:
        validate(step)
        _save(out / LAST, checkpoint_state(step))
        if not (out / BEST).exists():  # no validation set: the last state is the best known
            _save(out / BEST, checkpoint_state(step))
        if log is not None:
            log.plot(out / CURVE)
    if ctx.world > 1:
        dist.barrier()
    return TrainResult(out=out, step=step, best_score=state["best_score"], stopped=stopped,
                       last_loss=loss_value)
