"""The paper's plain baseline: no fusion; each modality is pooled alone and the head's linear layer
sees their concatenation (a linear projection of the concatenated modality embeddings)."""

from __future__ import annotations

import torch

from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.aggregation.base import AggregationOutput, Aggregator, rows_with_tokens
from isoformer.model.config import AggregationConfig


class ConcatenationAggregator(Aggregator):
    def __init__(self, config: AggregationConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)
        if self.query_modalities != self.modalities:
            raise IsoformerError(
                "aggregation: kind=linear concatenates every modality; use query_modalities=all"
            )

    def forward(self, embeddings: dict[str, EncoderOutput], present: dict[str, torch.Tensor],
                output_attentions: bool = False) -> AggregationOutput:
        fused = {
            m: EncoderOutput(
                hidden=embeddings[m].hidden,
                mask=embeddings[m].mask & rows_with_tokens(embeddings[m], present[m])[:, None],
            )
            for m in self.modalities
        }
        return AggregationOutput(fused=fused, attentions={} if output_attentions else None)
