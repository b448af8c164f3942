"""Typed run configuration: model (encoders, aggregation, head) and training, with YAML presets.

    config = load_preset("tiny")
    config = apply_overrides(config, ["model.modalities=dna,rna", "--training.lr", "1e-4"])
    save_config(config, "run/config.yaml")

Every field is typed (`Literal` choices included) and overrides are converted by those types, so a
typo in a name or a value fails early with the valid choices at that level.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from isoformer.constants import MODALITIES, TISSUES
from isoformer.encoders.base import EncoderConfig
from isoformer.errors import IsoformerError
from isoformer.files import write_text_atomic
from isoformer.model.aggregation.config import (  # noqa: F401 (re-exported)
    # The aggregation configs live beside their aggregators; every name stays importable here.
    AGGREGATION_CONFIGS,
    DEFAULT_MAX_DIM,
    PRE_POOLING_KINDS,
    TOKEN_PRESERVING_KINDS,
    AggregationConfig,
    CAbstractorConfig,
    ConcatConfig,
    CrossAttentionConfig,
    LinearProjectionConfig,
    PerceiverConfig,
    QueryModalities,
    aggregation_config,
    aggregation_kinds,
    upgrade_legacy_aggregation,
)
from isoformer.model.head import HeadConfig  # noqa: F401 (re-exported)
from isoformer.typed_config import coerce, field_hints, from_plain, tagged_arms, to_plain

PRESET_PACKAGE = "isoformer.configs"
ConfigT = TypeVar("ConfigT")


@dataclass
class ModelConfig:
    """The whole network: which modalities, their encoders, the fusion and the head."""

    modalities: list[str]
    encoders: dict[str, EncoderConfig]  # one per enabled modality (extra ones are ignored)
    aggregation: AggregationConfig = field(default_factory=CrossAttentionConfig)  # a kind's config
    head: HeadConfig = field(default_factory=HeadConfig)
    tissues: list[str] = field(default_factory=lambda: list(TISSUES))
    # DNA window (bp) the data pipeline extracts around the TSS; None = take it from the dataset.
    dna_length: int | None = None
    # Train on per-tissue standardised targets (training-split statistics kept in the model).
    standardize_targets: bool = True
    # Average-pool each encoder's valid tokens down to at most this many (adaptive, in order)
    # before fusion; None keeps every token. A pooled embedding cache (`embed --tokens K`) is
    # built with, and can only be trained with, the same value.
    pool_tokens: int | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise IsoformerError(
                f"model.modalities {self.modalities} must be a non-empty subset of "
                f"{', '.join(MODALITIES)} without repeats"
            )
        # One canonical order (dna, rna, protein): fusion and the head's concatenation follow it.
        self.modalities = [m for m in MODALITIES if m in self.modalities]
        missing = [m for m in self.modalities if m not in self.encoders]
        if missing:
            raise IsoformerError(
                f"model.encoders has no encoder for {', '.join(missing)} (has: "
                f"{', '.join(self.encoders) or 'none'})"
            )
        if not isinstance(self.aggregation, tuple(AGGREGATION_CONFIGS.values())):
            raise IsoformerError(f"model.aggregation: {self.aggregation!r} is not a kind's config")
        query = getattr(self.aggregation, "query_modalities", "all")
        if query == "dna" and "dna" not in self.modalities:
            raise IsoformerError(
                "model.aggregation.query_modalities=dna needs dna among model.modalities"
            )
        if (self.head.dna_pool_window is not None
                and self.aggregation.kind not in TOKEN_PRESERVING_KINDS):
            raise IsoformerError(
                f"model.head.dna_pool_window picks DNA token positions, which aggregation kind "
                f"{self.aggregation.kind} does not keep (only "
                f"{' and '.join(TOKEN_PRESERVING_KINDS)} do); set it to none"
            )
        if self.head.dna_pool == "max" and self.aggregation.kind in PRE_POOLING_KINDS:
            raise IsoformerError(
                f"model.head.dna_pool=max has no effect with aggregation kind "
                f"{self.aggregation.kind}, which mean-pools each modality before the head; use "
                "mean or another kind"
            )
        if not self.tissues or len(set(self.tissues)) != len(self.tissues):
            raise IsoformerError("model.tissues must be a non-empty list of distinct names")
        if self.dna_length is not None and self.dna_length < 1:
            raise IsoformerError(f"model.dna_length must be positive (got {self.dna_length})")
        if self.pool_tokens is not None and self.pool_tokens < 1:
            raise IsoformerError(f"model.pool_tokens must be positive (got {self.pool_tokens})")


@dataclass
class TrainingConfig:
    """Optimisation and loop settings (Lightning)."""

    lr: float = 3e-5
    # Per device and optimiser micro-step: effective batch = batch_size x devices x num_nodes x
    # accumulate_grad_batches.
    batch_size: int = 64
    max_epochs: int = 10
    patience: int = 3  # validation checks without improvement before early stopping
    min_delta: float = 0.0
    accumulate_grad_batches: int = 1
    # The batch of one optimiser step over all devices (the paper's 64). When set, the
    # accumulation is derived from it for the devices the run gets (`accumulation`), so the same
    # config trains alike on one GPU or eight; accumulate_grad_batches must then stay 1.
    effective_batch_size: int | None = None
    # Lightning precision. The head and the target statistics stay float32 under every choice
    # (float64 under 64-true). bf16-true keeps the weights themselves in bfloat16: updates below
    # 1/256 of a weight are lost (LayerNorm gains near 1 barely move at lr 3e-5), so bf16-mixed is
    # the one to train with. 16-mixed needs CUDA; without it training runs in 32-true.
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"] = "32-true"
    gradient_clip_val: float | None = None
    # The recipe. Adam at a constant rate is the paper's; AdamW decouples the weight decay.
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: to 0 at max_epochs
    warmup_fraction: float = 0.0  # of all optimiser steps, linear from 0 (either schedule)
    # Training DNA windows move by a random 0..dna_shift bp either way (Enformer: 3), so a model
    # cannot key on a gene's exact window; validation and prediction stay centred on the TSS.
    dna_shift: int = 0
    seed: int = 0
    num_workers: int = 0
    val_check_interval: float | None = None  # fraction of an epoch (or batches if > 1); None = 1.0
    # Where it runs (docs/distributed.md): devices per node (a count, or auto: every GPU, else one
    # CPU process), nodes, and the Lightning strategy. auto is one device's (or DDP on several);
    # fsdp shards weights, gradients and optimiser states (CUDA only); deepspeed needs the package.
    devices: int | Literal["auto"] = 1
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = "auto"

    def __post_init__(self) -> None:
        positive = {"lr": self.lr, "batch_size": self.batch_size, "max_epochs": self.max_epochs,
                    "accumulate_grad_batches": self.accumulate_grad_batches}
        bad = [name for name, value in positive.items() if value <= 0]
        if self.patience < 0 or self.num_workers < 0 or self.weight_decay < 0:
            bad.append("patience/num_workers/weight_decay")
        if not 0.0 <= self.warmup_fraction < 1.0 or self.dna_shift < 0:
            bad.append("warmup_fraction/dna_shift")
        if bad:
            raise IsoformerError(f"training: {', '.join(bad)} out of range")
        if self.effective_batch_size is not None and (
                self.effective_batch_size < 1 or self.accumulate_grad_batches != 1):
            raise IsoformerError(
                "training.effective_batch_size must be positive and leaves "
                "accumulate_grad_batches at 1 (it derives the accumulation); set one of them"
            )
        if self.devices != "auto" and self.devices < 1:
            raise IsoformerError(
                f"training.devices must be a count of at least 1 or auto (got {self.devices})"
            )
        if self.num_nodes < 1:
            raise IsoformerError(f"training.num_nodes must be at least 1 (got {self.num_nodes})")
        if self.strategy == "fsdp" and self.precision == "bf16-true":
            # The head stays float32 beside bfloat16 weights, and FSDP flattens only one dtype.
            raise IsoformerError(
                "training.strategy=fsdp cannot train in bf16-true (the head stays float32); "
                "use training.precision=bf16-mixed"
            )

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimiser step on `world_size` devices (all nodes together)."""
        if self.effective_batch_size is None:
            return self.accumulate_grad_batches
        per_step = self.batch_size * world_size
        if self.effective_batch_size % per_step:
            raise IsoformerError(
                f"training.effective_batch_size={self.effective_batch_size} is not a multiple "
                f"of batch_size {self.batch_size} x {world_size} device(s); choose a batch_size "
                "that divides it"
            )
        return self.effective_batch_size // per_step


@dataclass
class RunConfig:
    model: ModelConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)


def config_to_dict(config: RunConfig | ModelConfig) -> dict[str, Any]:
    """Plain nested dict of a config (lists, not tuples), ready for YAML or JSON."""
    return to_plain(config)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Inverse of `config_to_dict` for a `RunConfig` (types checked, unknown keys rejected); a
    legacy `kind: linear` aggregation reads as concat (`upgrade_legacy_aggregation`)."""
    if isinstance(data, dict) and "model" in data:
        data = {**data, "model": upgrade_legacy_aggregation(data["model"], "model")}
    return from_plain(RunConfig, data, "")


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Inverse of `config_to_dict` for a `ModelConfig` (legacy aggregation upgraded, as above)."""
    return from_plain(ModelConfig, upgrade_legacy_aggregation(data, "model"), "model")


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(PRESET_PACKAGE).iterdir()
                  if p.name.endswith(".yaml"))


def load_config(path: str | Path) -> RunConfig:
    """A `RunConfig` from a YAML file (a preset or a saved run's config.yaml)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise IsoformerError(f"{path}: not valid YAML ({error})") from None
    try:
        return config_from_dict(data)
    except IsoformerError as error:
        raise IsoformerError(f"{path}: {error}") from None


def load_preset(name: str) -> RunConfig:
    """The named preset (`tiny`, `paper`, `paper-nt`) from the package's configs/ folder."""
    names = preset_names()
    if name not in names:
        raise IsoformerError(f"unknown preset {name!r} (known: {', '.join(names)})")
    with resources.as_file(resources.files(PRESET_PACKAGE) / f"{name}.yaml") as path:
        return load_config(path)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write `config` as YAML, atomically (temporary file, then rename)."""
    write_text_atomic(yaml.safe_dump(config_to_dict(config), sort_keys=False), path)


def _split_overrides(overrides: list[str]) -> list[tuple[str, str]]:
    """"a.b=c", "--a.b=c" and "--a.b c" -> [(path, text)]."""
    pairs = []
    tokens = list(overrides)
    while tokens:
        token = tokens.pop(0)
        key = token[2:] if token.startswith("--") else token
        if "=" in key:
            name, text = key.split("=", 1)
        elif token.startswith("--") and tokens and not tokens[0].startswith("--"):
            name, text = key, tokens.pop(0)
        else:
            raise IsoformerError(f"override {token!r}: write it as section.field=value")
        pairs.append((name, text))
    return pairs


def apply_overrides(config: ConfigT, overrides: list[str]) -> ConfigT:
    """`config` (a RunConfig or any typed config) with dotted overrides applied, e.g.
    `training.lr=1e-4`, `model.modalities=dna,rna`,
    `model.encoders.dna.init=pretrained`, `model.encoders.rna.architecture.num_hidden_layers=4`.

    Values are converted by the field's type (lists comma-separated, `none` for an empty optional);
    an unknown name is an error listing the valid names at that level.

    A section holding one of several kinds (a tagged union: `model.aggregation`) takes the fields
    of its current kind. Setting its `kind` to another kind replaces the section with that kind's
    defaults; `kind` overrides are applied first, so `model.aggregation.num_latents=16
    model.aggregation.kind=perceiver` is a perceiver with 16 latents in either order.
    """
    data = to_plain(config)
    pairs = _split_overrides(overrides)
    pairs.sort(key=lambda pair: pair[0].rsplit(".", 1)[-1] != "kind")  # stable: kinds first
    for path, text in pairs:
        parts = path.split(".")
        node, hint = data, type(config)
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            arms = tagged_arms(hint)
            if arms is not None:
                level = ".".join(parts[:depth])
                if part == "kind" and last:
                    kind = coerce(text, Literal[tuple(arms)], where)
                    if node.get("kind", next(iter(arms))) != kind:
                        node.clear()  # another kind: its defaults, none of the old fields
                    node["kind"] = kind
                    break
                kind = node.get("kind", next(iter(arms)))
                hints = field_hints(arms[kind])
                if part not in hints:
                    raise IsoformerError(
                        f"override {path!r}: {level} (kind {kind}) has no field {part!r} "
                        f"(valid: {', '.join(hints)}; set {level}.kind to change the kind)"
                    )
                hint = hints[part]
            elif dataclasses.is_dataclass(hint):
                hints = field_hints(hint)
                if part not in hints:
                    level = ".".join(parts[:depth]) or "config"
                    raise IsoformerError(
                        f"override {path!r}: {level} has no field {part!r} (valid: "
                        f"{', '.join(hints)})"
                    )
                hint = hints[part]
            elif typing.get_origin(hint) is dict:
                value_hint = typing.get_args(hint)[1]
                if value_hint is not Any and part not in node:
                    level = ".".join(parts[:depth])
                    raise IsoformerError(
                        f"override {path!r}: {level} has no entry {part!r} (has: "
                        f"{', '.join(node) or 'none'})"
                    )
                hint = value_hint
            else:
                raise IsoformerError(f"override {path!r}: {'.'.join(parts[:depth])} has no fields")
            if last:
                node[part] = to_plain(coerce(text, hint, where))
            else:
                if not isinstance(node.get(part), dict):
                    raise IsoformerError(f"override {path!r}: {where} is not a section")
                node = node[part]
    return from_plain(type(config), data, "")
