"""Training configuration: strict pydantic models read from YAML.

Every section forbids unknown keys, so a typo such as ``pach: 256`` fails with the key's
dotted path instead of being ignored. Relative paths are taken relative to the working
directory of the command.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lightmycells.vocab import MODALITIES, Modality, Organelle


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and key."""


class Gate(StrEnum):
    """Skip wiring of the attention residual U-Net (``model.gate``)."""

    OKTAY = "oktay"
    """Oktay et al. (2018): the gate multiplies the encoder skip."""
    BUGHUNTERS = "bughunters"
    """Seed 004's code: the gate multiplies the up-sampled decoder features."""
    NONE = "none"
    """No gate: a plain residual U-Net."""


class ZStack(StrEnum):
    """What a field of view's focus stack becomes before patches are drawn (``data.zstack``).

    Also the manifest's ``zstack`` key, so the container reduces z-stack inputs the same way.
    """

    PLANE = "plane"
    """Any single plane (a random one per sample in training: focus as augmentation)."""
    MIP = "mip"
    """The maximum-intensity projection of all planes (seed 004)."""
    BEST = "best"
    """The best-focus plane only (``best_z.csv``, else the middle plane)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Decoders(StrEnum):
    """Decoder layout of the ``resgen`` generator (``model.decoders``)."""

    SHARED = "shared"
    """One decoder for all output organelles."""
    PER_ORGANELLE = "per_organelle"
    """One decoder per output organelle on a shared encoder (seed 003)."""


class Condition(StrEnum):
    """What a model is conditioned on besides the image (``model.condition``)."""

    NONE = "none"
    MODALITY = "modality"
    """A one-hot modality code, applied by FiLM after the stem and each down-sampling (seed
    003's "dynamic" model); exported as one ONNX file per modality with the code folded in."""


class GanMode(StrEnum):
    """Adversarial loss (``gan.mode``)."""

    VANILLA = "vanilla"
    """Binary cross-entropy on logits (pix2pix, seed 003)."""
    LSGAN = "lsgan"
    """Least squares: (D(real) − 1)² and D(fake)²."""


class AugmentConfig(_Strict):
    """Patch augmentation; ranges are symmetric around "no change"."""

    dihedral: bool = True
    """Random flips and 90° rotations (the 8 symmetries of the square)."""
    contrast: float = Field(default=0.2, ge=0.0, le=0.9)
    """Input contrast is multiplied by a factor in ``[1 - contrast, 1 + contrast]``."""
    brightness: float = Field(default=0.1, ge=0.0, le=1.0)
    """Offset in normalised units added to the input, in ``[-brightness, brightness]``."""
    gamma: float = Field(default=0.3, ge=0.0, le=2.0)
    """Input gamma drawn log-uniformly in ``[1 / (1 + gamma), 1 + gamma]``."""
    elastic: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability of a smooth elastic deformation of input and target together."""
    elastic_alpha: float = Field(default=4.0, ge=0.0, le=50.0)
    """Elastic displacement amplitude in pixels."""


class DataConfig(_Strict):
    """Where the images are, which targets, how fields of view are split and sampled."""

    roots: list[Path] = Field(default_factory=list)
    """Light My Cells-layout folders (each holding ``Study_N/`` folders)."""
    pairs: Path | None = None
    """A CSV of the user's own pairs (:mod:`lightmycells.train.pairs`), used beside or
    instead of ``roots``."""
    organelles: list[Organelle] = Field(min_length=1)
    """The model's output channels, in order."""
    modalities: list[Modality] = Field(default_factory=lambda: list(MODALITIES))
    """Transmitted-light modalities to train on."""
    split: Literal["fov", "study", "region"] = "fov"
    """Hold out whole fields of view, whole studies, or a region of every image: ``region``
    validates on the bottom ``val_fraction`` of each image's rows and trains on patches from
    the rows above (for a few images of one's own, where no whole image can be spared)."""
    val_fraction: float = Field(default=0.1, ge=0.0, le=0.9)
    """Fraction of fields of view (or studies, or image rows) held out for validation."""
    max_val_images: int = Field(default=8, ge=0, le=10_000)
    """Cap on validation fields of view (whole-image validation is slow on a CPU)."""
    split_seed: int = 0
    """Seed of the split; fixed so resumed and repeated runs validate on the same images."""
    patch: int = Field(default=256, ge=16, le=4096)
    """Training patch edge in pixels (smaller images are reflect-padded)."""
    batch_size: int = Field(default=8, ge=1, le=1024)
    """Patches per optimisation step (per process under DDP)."""
    num_workers: int = Field(default=0, ge=0, le=64)
    """DataLoader worker processes."""
    cache: bool = True
    """Keep decoded images in memory (fine for simulated sets; off for the full real set)."""
    norm_low: float = Field(default=2.0, ge=0.0, lt=50.0)
    """Lower percentile of the input and target normalisation."""
    norm_high: float = Field(default=99.8, gt=50.0, le=100.0)
    """Upper percentile of the input and target normalisation."""
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig())
    """Patch augmentation."""
    resample_um: float | None = Field(default=None, gt=0.01, le=10.0)
    """Resample every input and target to this pixel size (µm) at load time; null keeps
    each image's own pixels. The export writes it as the manifest's ``pixel_size_um``."""
    pixel_size_range_um: tuple[float, float] | None = None
    """Train only on images whose pixel size (µm, x) lies in ``[lo, hi)``; null keeps all.
    The export writes it as the manifest's ``pixel_size_um_range``."""
    zstack: ZStack = ZStack.PLANE
    """Focus-stack reduction before sampling (see :class:`ZStack`)."""
    store: Path | None = None
    """A store written by ``python -m lightmycells.data pack``: the fields of view come from
    its index (quirky files already left out) and patches are read from its chunks with
    precomputed statistics; ``roots`` is then not scanned. Null reads the TIFFs under
    ``roots``."""

    @model_validator(mode="after")
    def _some_data(self) -> DataConfig:
        if not self.roots and self.pairs is None and self.store is None:
            raise ValueError("data: give roots (Light My Cells-layout folders), pairs "
                             "(a CSV of pairs) or a store (python -m lightmycells.data pack)")
        return self

    @model_validator(mode="after")
    def _patch_is_even(self) -> DataConfig:
        if self.patch % 16:
            raise ValueError(f"data.patch must be a multiple of 16 (got {self.patch})")
        if self.store is not None and self.zstack == ZStack.MIP:
            raise ValueError("data.store serves single planes: expected data.zstack plane "
                             "or best")
        return self

    @model_validator(mode="after")
    def _range_is_ordered(self) -> DataConfig:
        if self.pixel_size_range_um is not None:
            lo, hi = self.pixel_size_range_um
            if not 0 <= lo < hi:
                raise ValueError(f"data.pixel_size_range_um must be [lo, hi) with 0 <= lo < hi "
                                 f"(got [{lo}, {hi}])")
        return self


class UnetrConfig(_Strict):
    """The UNETR of seed 002 (``model.name: unetr``, :mod:`lightmycells.train.models.unetr`)."""

    token: int = Field(default=16, ge=4, le=64)
    """Token edge in pixels, a power of two; inputs must be multiples of it (BiaPy: 32)."""
    embed: int = Field(default=64, ge=8, le=1024)
    """Transformer width, a multiple of 4 and of ``heads`` (BiaPy: 768)."""
    layers: int = Field(default=4, ge=1, le=24)
    """Transformer blocks (BiaPy: 12); skips tap evenly spaced ones."""
    heads: int = Field(default=4, ge=1, le=32)
    """Attention heads (BiaPy: 12)."""
    mlp_ratio: float = Field(default=4.0, gt=0.0, le=8.0)
    """MLP hidden width over ``embed``."""
    dec_width: int = Field(default=16, ge=2, le=128)
    """Decoder filters at full resolution, doubled per level (BiaPy: 32)."""
    dec_kernel: int = Field(default=3, ge=1, le=11)
    """Kernel of every decoder convolution, odd (BiaPy's best: 9)."""

    @model_validator(mode="after")
    def _consistent(self) -> UnetrConfig:
        problems = []
        if self.token & (self.token - 1):
            problems.append(f"token must be a power of two (got {self.token})")
        if self.embed % 4 or self.embed % self.heads:
            problems.append(f"embed must be a multiple of 4 and of heads={self.heads} "
                            f"(got {self.embed})")
        if self.dec_kernel % 2 == 0:
            problems.append(f"dec_kernel must be odd (got {self.dec_kernel})")
        levels = self.token.bit_length() - 2
        if self.layers < levels:
            problems.append(f"layers must be at least log2(token) - 1 = {levels} skip levels "
                            f"(got {self.layers})")
        if problems:
            raise ValueError("model.unetr: " + "; ".join(problems))
        return self


class ModelConfig(_Strict):
    """Architecture: a registry name and its size."""

    name: str = "runet"
    """Registry key (see :data:`lightmycells.train.models.MODELS`)."""
    depth: int = Field(default=3, ge=1, le=6)
    """Number of 2× down-samplings; inputs must be multiples of ``2**depth``."""
    width: int = Field(default=16, ge=2, le=256)
    """Channels at full resolution; doubled at each level."""
    blocks: int = Field(default=1, ge=1, le=16)
    """Residual blocks per level."""
    norm: Literal["batch", "none"] = "batch"
    """Batch norm folds into a per-channel affine map at inference, so it is tile-independent."""
    gate: Gate | None = None
    """Skip wiring of ``attresunet`` (see :class:`Gate`; null means ``oktay``); other models
    have no gates and take null."""
    unetr: UnetrConfig | None = None
    """Size of ``unetr`` (null means the defaults of :class:`UnetrConfig`); other models take
    null. ``depth``, ``width``, ``blocks`` and ``norm`` do not apply to it."""
    decoders: Decoders | None = None
    """``resgen`` only: decoder layout (null means ``per_organelle``)."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """``resgen`` only: dropout in the residual blocks (off at export: eval mode)."""
    condition: Condition = Condition.NONE
    """``resgen`` only: ``modality`` makes the seed-003 dynamic model (see :class:`Condition`)."""

    @model_validator(mode="after")
    def _resgen_keys_only_for_resgen(self) -> ModelConfig:
        if self.name != "resgen":
            given = [key for key, unset in (("decoders", self.decoders is None),
                                            ("dropout", self.dropout == 0.0),
                                            ("condition", self.condition == Condition.NONE))
                     if not unset]
            if given:
                raise ValueError(f"model.{given[0]} applies to model 'resgen' only (got model "
                                 f"{self.name!r})")
        return self

    @model_validator(mode="after")
    def _gate_only_where_gated(self) -> ModelConfig:
        if self.gate is not None and self.name != "attresunet":
            raise ValueError(f"model.gate applies to model 'attresunet' only (got model "
                             f"{self.name!r} with gate {self.gate!r})")
        if self.unetr is not None and self.name != "unetr":
            raise ValueError(f"model.unetr applies to model 'unetr' only (got model "
                             f"{self.name!r})")
        return self

    def size_multiple(self) -> tuple[int, str]:
        """What input edges must be multiples of, and the key that says so."""
        if self.name == "unetr":
            return (self.unetr or UnetrConfig()).token, "model.unetr.token"
        return 2**self.depth, "2**model.depth"


class LossConfig(_Strict):
    """Weights of the loss terms (all masked by target availability); 0 disables a term."""

    mse: float = Field(default=1.0, ge=0.0)
    ssim: float = Field(default=0.2, ge=0.0)
    pearson: float = Field(default=0.1, ge=0.0)
    cosine: float = Field(default=0.1, ge=0.0)
    l1: float = Field(default=0.0, ge=0.0)
    l1_weighted: float = Field(default=0.0, ge=0.0)
    """Seed 003's adaptive L1: per pixel, weight 1 where the target lies in its own
    [p_low, p_high] range (normalised value in [0, 1]) and 0.1 outside."""

    @model_validator(mode="after")
    def _some_term(self) -> LossConfig:
        if not any(self.model_dump().values()):
            raise ValueError("loss: at least one term must have a positive weight")
        return self


class OptimConfig(_Strict):
    """AdamW with linear warm-up and cosine decay."""

    lr: float = Field(default=1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0)
    warmup_steps: int = Field(default=100, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam(W) betas; pix2pix (seed 003) uses (0.5, 0.999)."""
    min_lr_ratio: float = Field(default=0.02, ge=0.0, le=1.0)
    """Floor of the cosine decay as a fraction of ``lr``."""
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    """Maximum global gradient norm; null disables clipping."""
    freeze_norm: bool = False
    """Keep batch norms in eval mode (fixed statistics): for fine-tuning on a few images, and
    required after ``init_from`` an ONNX file, whose batch statistics were folded away."""


class ValConfig(_Strict):
    """Whole-image validation through the container's tiler, scored with challenge metrics."""

    every: int = Field(default=200, ge=1)
    """Validate every this many steps (and at the end)."""
    tile: int = Field(default=256, ge=16, le=4096)
    """Tile edge; also the manifest ``patch`` the export writes."""
    overlap: float = Field(default=0.25, ge=0.0, lt=1.0)
    """Tile overlap fraction; also the manifest ``overlap``."""
    batch_size: int = Field(default=4, ge=1, le=256)
    """Tiles per forward pass."""
    monitor: Literal["pcc", "ssim", "pcc+ssim"] = "pcc+ssim"
    """Score for early stopping and the best checkpoint (mean over images and organelles)."""
    patience: int | None = Field(default=None, ge=1)
    """Stop after this many validations without improvement; null never stops early."""


class RunKind(StrEnum):
    """What a run trains (see ``lightmycells.train.loop.RUN_KINDS``)."""

    SUPERVISED = "supervised"
    """Transmitted light → organelles (every run without a ``pretrain`` section)."""
    MAE = "mae"
    """Masked-autoencoder pretraining of a UNETR's encoder on unlabelled planes (seed 002)."""


class MaskKind(StrEnum):
    """Which tokens a masked autoencoder hides (``pretrain.mask``)."""

    GRID = "grid"
    """A fixed 50 % checkerboard of the token grid, the same every step (seed 002's choice:
    random masking made its model predict the mean of these non-object-centric images)."""
    RANDOM = "random"
    """A fresh random ``ratio`` of the tokens per sample (He et al. 2022)."""


class PretrainConfig(_Strict):
    """Self-supervised pretraining; present only in a pretraining run's config."""

    kind: Literal[RunKind.MAE] = RunKind.MAE
    """The pretraining run kind (only ``mae`` so far)."""
    mask: MaskKind = MaskKind.GRID
    ratio: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Fraction of tokens masked; ``grid`` masks exactly half and takes 0.5 only."""
    dec_embed: int = Field(default=64, ge=8, le=1024)
    """Width of the MAE's transformer decoder (thrown away after pretraining), a multiple of 4
    and of ``dec_heads``."""
    dec_layers: int = Field(default=2, ge=1, le=16)
    dec_heads: int = Field(default=4, ge=1, le=32)
    norm_pix_loss: bool = False
    """Target each token's pixels normalised by their own mean and variance (He et al.'s
    option; off in BiaPy)."""
    extra_roots: list[Path] = Field(default_factory=list)
    """More Light My Cells-layout folders, targets or not, whose planes also train the MAE."""

    @model_validator(mode="after")
    def _consistent(self) -> PretrainConfig:
        if self.mask == MaskKind.GRID and self.ratio != 0.5:
            raise ValueError(f"pretrain.ratio: the grid mask hides exactly half the tokens "
                             f"(got ratio {self.ratio}; use mask: random for another ratio)")
        if self.dec_embed % 4 or self.dec_embed % self.dec_heads:
            raise ValueError(f"pretrain.dec_embed must be a multiple of 4 and of dec_heads="
                             f"{self.dec_heads} (got {self.dec_embed})")
        return self


class GanConfig(_Strict):
    """Conditional PatchGAN training (seed 003): one discriminator per output organelle.

    The generator's loss gains ``weight`` × the adversarial term from step ``start_step``
    (an L1-only warm-up before it). The discriminators are never exported.
    """

    weight: float = Field(default=0.005, ge=0.0)
    """Weight of the adversarial term; 0.005 beside ``loss.l1_weighted: 1`` is the paper's
    100 : 1 (L1 on [-1, 1] : cGAN) in the project's [0, 1] units (docs/MODELS.md)."""
    mode: GanMode = GanMode.VANILLA
    width: int = Field(default=16, ge=2, le=256)
    """Discriminator channels of the first layer (the seed's ``ndf`` 64)."""
    layers: int = Field(default=3, ge=1, le=6)
    """Stride-2 layers (3: 70×70 patches)."""
    norm: Literal["instance", "batch", "none"] = "instance"
    """Discriminator norm (see :mod:`lightmycells.train.models.patchgan` on why instance)."""
    lr: float = Field(default=2e-4, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.5, 0.999)
    start_step: int = Field(default=0, ge=0)
    """Steps of L1-only warm-up: discriminators and the adversarial term start here."""


class TrainConfig(_Strict):
    """One training run."""

    out: Path
    """Run folder: checkpoints, ``log.csv``, ``curve.png``, ``config.yaml``."""
    steps: int = Field(ge=1)
    """Optimisation steps."""
    max_minutes: float | None = Field(default=None, gt=0.0)
    """Wall-clock budget; the run stops (and checkpoints) when it is used up."""
    seed: int = 0
    """Seed of model initialisation and patch sampling."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    threads: int | None = Field(default=None, ge=1, le=256)
    """torch intra-op threads per process; null keeps torch's default."""
    checkpoint_every: int = Field(default=100, ge=1)
    """Write ``last.pt`` every this many steps."""
    resume: bool = True
    """Continue from ``out/last.pt`` when it exists."""
    init_from: Path | None = None
    """Start from these weights (a checkpoint, or an exported ``.onnx`` of the same
    architecture: :mod:`lightmycells.train.init`); a resumed run continues its own instead."""
    init_prefix: str | None = None
    """Renaming rule ``"SRC->DST"`` for ``init_from`` checkpoint tensor names."""
    progress: bool = True
    """Show a progress bar (rank 0 only)."""
    data: DataConfig
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    loss: LossConfig = Field(default_factory=lambda: LossConfig())
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig())
    val: ValConfig = Field(default_factory=lambda: ValConfig())
    pretrain: PretrainConfig | None = None
    """Makes this a self-supervised pretraining run (see :class:`PretrainConfig`)."""
    gan: GanConfig | None = None
    """Adversarial training (seed 003); null trains without discriminators."""

    @property
    def run_kind(self) -> RunKind:
        """What this run trains: ``pretrain.kind``, else supervised."""
        return RunKind.SUPERVISED if self.pretrain is None else RunKind(self.pretrain.kind)

    @model_validator(mode="after")
    def _gan_is_supervised(self) -> TrainConfig:
        if self.gan is not None and self.pretrain is not None:
            raise ValueError("gan: adversarial training is for supervised runs, not for a "
                             "pretrain run")
        return self

    @model_validator(mode="after")
    def _pretrain_needs_a_vit(self) -> TrainConfig:
        if self.pretrain is not None and self.model.name != "unetr":
            raise ValueError(f"pretrain (a masked autoencoder) trains a UNETR's encoder: set "
                             f"model.name: unetr (got {self.model.name!r})")
        return self

    @model_validator(mode="after")
    def _onnx_init_freezes_norm(self) -> TrainConfig:
        if (self.init_from is not None and self.init_from.suffix.lower() == ".onnx"
                and not self.optim.freeze_norm):
            raise ValueError(f"init_from {self.init_from} is an ONNX file, whose batch-norm "
                             "statistics were folded into its convolutions: set "
                             "optim.freeze_norm: true")
        return self

    @model_validator(mode="after")
    def _sizes_fit_depth(self) -> TrainConfig:
        multiple, rule = self.model.size_multiple()
        for key, size in (("data.patch", self.data.patch), ("val.tile", self.val.tile)):
            if size % multiple:
                raise ValueError(f"{key} must be a multiple of {rule} = {multiple} (got {size})")
        return self


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for ``dotted`` = ``"a.b.c"``, making sections."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[leaf] = value


def parse_config(
    raw: dict[str, Any], *, source: str = "<config>", overrides: list[str] | None = None
) -> TrainConfig:
    """Validate a config mapping, after applying ``key.sub=value`` overrides (YAML values).

    Raises
    ------
    ConfigError
        One line per problem, each naming ``source`` and the dotted key.
    """
    raw = copy.deepcopy(raw)  # overrides must not write into the caller's nested mappings
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        set_dotted(raw, key.strip(), yaml.safe_load(text))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{source}: {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (a config, or a recipe of dotted keys), unvalidated."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read and validate a YAML training config (see :func:`parse_config`)."""
    return parse_config(read_mapping(path), source=str(path), overrides=overrides)


def dump_config(config: TrainConfig) -> str:
    """The config as YAML, for the run folder and the checkpoint."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
