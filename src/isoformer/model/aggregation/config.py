"""Aggregation configs: one typed config per kind, told apart by `kind` (a tagged union).

A YAML block or saved config.json names its kind and gives only that kind's fields; a missing
kind is cross_attention. Overriding `model.aggregation.kind` to another kind resets the block to
that kind's defaults (before the other overrides, whatever their order); see
`isoformer.model.config.apply_overrides`. Each kind's aggregator is in this package (see its
`__init__`); `ModelConfig` (`isoformer.model.config`) holds one of these as `model.aggregation`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from isoformer.errors import IsoformerError
from isoformer.typed_config import tagged_arms

logger = logging.getLogger(__name__)

QueryModalities = Literal["all", "dna"]


def _check_aggregation(config: Any, positive: tuple[str, ...] = (),
                       non_negative: tuple[str, ...] = ()) -> None:
    """Range checks shared by the aggregation configs: the named fields, `dim` (none or at least
    1) and `dropout` (in [0, 1)) where the kind has them."""
    problems = [f"{name} must be at least 1" for name in positive if getattr(config, name) < 1]
    problems += [f"{name} must be at least 0" for name in non_negative
                 if getattr(config, name) < 0]
    dim = getattr(config, "dim", None)
    if dim is not None and dim < 1:
        problems.append("dim must be at least 1 (or none)")
    dropout = getattr(config, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        problems.append(f"dropout {dropout} is outside [0, 1)")
    if problems:
        raise IsoformerError(f"aggregation (kind {config.kind}): {'; '.join(problems)}")


@dataclass
class CrossAttentionConfig:
    """The paper's IsoFormer fusion: each query modality's tokens attend to every other modality
    (`isoformer.model.aggregation.cross_attention`); widths stay the encoders'."""

    kind: Literal["cross_attention"] = "cross_attention"
    num_heads: int = 8
    num_layers: int = 1
    dropout: float = 0.0
    # all: every enabled modality is a query (the paper's framework); dna: only DNA queries,
    # attending to RNA then protein (the released checkpoint's layout).
    query_modalities: QueryModalities = "all"

    def __post_init__(self) -> None:
        _check_aggregation(self, ("num_heads", "num_layers"))


@dataclass
class LinearProjectionConfig:
    """Linear projection baseline: each modality mean-pooled over its valid tokens, projected to
    `dim`, the projections concatenated for the head (`aggregation.linear`)."""

    kind: Literal["linear"] = "linear"
    dim: int | None = None  # width of each projection; none: widest encoder's, <= 512

    def __post_init__(self) -> None:
        _check_aggregation(self)


@dataclass
class ConcatConfig:
    """No fusion: every modality's tokens pass unchanged; the head mean-pools each and reads their
    concatenation (`aggregation.linear`). Called `linear` before the projection kind existed."""

    kind: Literal["concat"] = "concat"


@dataclass
class PerceiverConfig:
    """Perceiver Resampler (Flamingo): per modality, `num_latents` learned latents cross-attend to
    its tokens; then self-attention over all modalities' latents (`aggregation.perceiver`)."""

    kind: Literal["perceiver"] = "perceiver"
    num_latents: int = 32  # tokens per modality after resampling
    num_layers: int = 2  # resampler layers (latent cross-attention + feed-forward)
    num_heads: int = 8  # resampler and fusion attention
    dim: int | None = None  # latent width; none: the widest encoder's, at most 512
    ff_mult: int = 4  # feed-forward hidden width = ff_mult x dim
    fusion_layers: int = 1  # self-attention layers over the concatenated latents (0: none)
    dropout: float = 0.0
    query_modalities: QueryModalities = "all"  # whose latents the head reads

    def __post_init__(self) -> None:
        _check_aggregation(self, ("num_latents", "num_layers", "num_heads", "ff_mult"),
                           ("fusion_layers",))


@dataclass
class CAbstractorConfig:
    """C-Abstractor (Honeybee): per modality, residual convolution blocks over its tokens,
    adaptive average pooling of the valid tokens to `num_tokens`, more blocks, an MLP projection;
    then self-attention over all modalities' tokens (`aggregation.c_abstractor`)."""

    kind: Literal["c_abstractor"] = "c_abstractor"
    num_tokens: int = 32  # tokens per modality after pooling
    depth: int = 3  # residual conv blocks before and (as many) after the pooling
    kernel_size: int = 3  # odd
    dim: int | None = None  # token width; none: the widest encoder's, at most 512
    num_heads: int = 8  # fusion attention
    ff_mult: int = 4  # fusion feed-forward hidden width = ff_mult x dim
    fusion_layers: int = 1  # self-attention layers over the concatenated tokens (0: none)
    dropout: float = 0.0
    query_modalities: QueryModalities = "all"  # whose tokens the head reads

    def __post_init__(self) -> None:
        _check_aggregation(self, ("num_tokens", "kernel_size", "num_heads", "ff_mult"),
                           ("depth", "fusion_layers"))
        if self.kernel_size % 2 == 0:
            raise IsoformerError(
                f"aggregation (kind c_abstractor): kernel_size {self.kernel_size} must be odd"
            )


# The union's order is the order errors list the kinds in; its first kind is the default.
AggregationConfig = (
    CrossAttentionConfig | LinearProjectionConfig | ConcatConfig | PerceiverConfig
    | CAbstractorConfig
)
AGGREGATION_CONFIGS: dict[str, type] = tagged_arms(AggregationConfig)  # kind -> config class
# A kind's `dim` left unset: the widest encoder's width, capped here (the paper's Enformer 3,072
# would make the perceiver's and c_abstractor's per-modality blocks hundreds of millions wide).
DEFAULT_MAX_DIM = 512
# Kinds whose fused tokens are the encoders' own positions (head.dna_pool_window applies).
TOKEN_PRESERVING_KINDS = ("cross_attention", "concat")
# Kinds that mean-pool each modality to one token before the head (head.dna_pool=max would be a
# mean).
PRE_POOLING_KINDS = ("linear",)


def aggregation_kinds() -> list[str]:
    """Every aggregation kind, in the order errors list them (cross_attention first)."""
    return list(AGGREGATION_CONFIGS)


def aggregation_config(kind: str = "cross_attention", **fields: Any) -> AggregationConfig:
    """The config of aggregation `kind` with `fields` set (the others at their defaults)."""
    if kind not in AGGREGATION_CONFIGS:
        raise IsoformerError(
            f"aggregation: kind {kind!r} is not one of {', '.join(AGGREGATION_CONFIGS)}"
        )
    return AGGREGATION_CONFIGS[kind](**fields)


def upgrade_legacy_aggregation(data: Any, where: str) -> Any:
    """A config saved before the aggregation kinds were split (its block lists num_heads,
    num_layers, dropout and query_modalities whatever the kind), with `kind: linear` meaning what
    is now `concat`: mapped to `{kind: concat}` (the same model, weights included: neither kind
    has parameters), with a warning. Returns `data` itself when there is nothing to upgrade."""
    block = data.get("aggregation") if isinstance(data, dict) else None
    legacy = {"num_heads", "num_layers", "query_modalities"}
    if not (isinstance(block, dict) and block.get("kind") == "linear" and legacy & set(block)):
        return data
    logger.warning("%s.aggregation: kind linear with %s is the former concatenation baseline, "
                   "read as kind concat (kind linear is now a linear projection)", where,
                   "/".join(sorted(legacy & set(block))))
    return {**data, "aggregation": {"kind": "concat"}}
