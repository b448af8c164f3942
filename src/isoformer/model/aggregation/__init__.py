"""Fusion of the modalities' token embeddings; `build_aggregator` maps a config's kind to a class.

| kind            | config                 | what the head reads, per query modality          |
| cross_attention | CrossAttentionConfig   | its tokens after attending to the others         |
| linear          | LinearProjectionConfig | one token: its masked mean, projected to dim     |
| concat          | ConcatConfig           | its own tokens, unchanged                        |
| perceiver       | PerceiverConfig        | num_latents resampled latents, fused by attention |
| c_abstractor    | CAbstractorConfig      | num_tokens conv-pooled tokens, fused by attention |

The configs are in `config.py` (also importable from `isoformer.model.config`).
"""

from __future__ import annotations

from isoformer.errors import IsoformerError
from isoformer.model.aggregation.base import AggregationOutput, Aggregator
from isoformer.model.aggregation.c_abstractor import CAbstractorAggregator
from isoformer.model.aggregation.config import AGGREGATION_CONFIGS, AggregationConfig
from isoformer.model.aggregation.cross_attention import CrossAttentionAggregator
from isoformer.model.aggregation.linear import ConcatenationAggregator, LinearProjectionAggregator
from isoformer.model.aggregation.perceiver import PerceiverAggregator

AGGREGATORS: dict[str, type[Aggregator]] = {
    "cross_attention": CrossAttentionAggregator,
    "linear": LinearProjectionAggregator,
    "concat": ConcatenationAggregator,
    "perceiver": PerceiverAggregator,
    "c_abstractor": CAbstractorAggregator,
}
assert set(AGGREGATORS) == set(AGGREGATION_CONFIGS), "every aggregation config needs its class"


def build_aggregator(config: AggregationConfig, input_dims: dict[str, int]) -> Aggregator:
    """The aggregator `config.kind` names, over modalities of the given widths."""
    expected = AGGREGATION_CONFIGS.get(config.kind)
    if expected is None or not isinstance(config, expected):
        raise IsoformerError(f"aggregation: {config!r} is not the config of a known kind")
    return AGGREGATORS[config.kind](config, input_dims)


__all__ = [
    "AGGREGATORS",
    "AggregationOutput",
    "Aggregator",
    "CAbstractorAggregator",
    "ConcatenationAggregator",
    "CrossAttentionAggregator",
    "LinearProjectionAggregator",
    "PerceiverAggregator",
    "build_aggregator",
]
