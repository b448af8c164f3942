"""Fusion of the modalities' token embeddings; `build_aggregator` maps a config kind to a class."""

from __future__ import annotations

from isoformer.model.aggregation.base import AggregationOutput, Aggregator
from isoformer.model.aggregation.cross_attention import CrossAttentionAggregator
from isoformer.model.aggregation.linear import ConcatenationAggregator
from isoformer.model.config import AggregationConfig

_AGGREGATORS: dict[str, type[Aggregator]] = {
    "cross_attention": CrossAttentionAggregator,
    "linear": ConcatenationAggregator,
}


def build_aggregator(config: AggregationConfig, input_dims: dict[str, int]) -> Aggregator:
    """The aggregator `config.kind` names, over modalities of the given widths."""
    return _AGGREGATORS[config.kind](config, input_dims)


__all__ = [
    "AggregationOutput",
    "Aggregator",
    "ConcatenationAggregator",
    "CrossAttentionAggregator",
    "build_aggregator",
]
