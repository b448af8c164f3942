"""The paper's baselines without cross-modal attention.

concat: no fusion. Every modality's tokens pass unchanged (rows without the modality masked); the
head mean-pools each modality and its linear layer reads their concatenation. This kind was
called `linear` before the projection kind below existed: a saved config with the old layout
(`kind: linear` beside num_heads / num_layers / query_modalities) reads as concat, see
`isoformer.model.aggregation.config.upgrade_legacy_aggregation`.

linear (linear projection): each modality mean-pooled over its valid tokens, projected by its own
Linear to the common width D (`dim`; unset: the widest encoder's, at most 512), the projections
combined by concatenation: each is one token [B, 1, D] of its modality's output, and the head
concatenates them in the order dna, rna, protein. A row without the modality: zero and masked
(the head pools it to zeros, as concat does), whatever its tokens held.
"""

from __future__ import annotations

import torch
from torch import nn

from isoformer.encoders.base import EncoderOutput
from isoformer.model.aggregation.base import (
    AggregationOutput,
    Aggregator,
    rows_with_tokens,
    valid_tokens,
)
from isoformer.model.aggregation.config import ConcatConfig, LinearProjectionConfig
from isoformer.model.head import masked_mean


class ConcatenationAggregator(Aggregator):
    def __init__(self, config: ConcatConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)

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


class LinearProjectionAggregator(Aggregator):
    def __init__(self, config: LinearProjectionConfig, input_dims: dict[str, int]):
        super().__init__(config, input_dims)
        self.dim = self.common_dim()
        self.projections = nn.ModuleDict(
            {m: nn.Linear(self.input_dims[m], self.dim) for m in self.modalities}
        )

    @property
    def output_dims(self) -> dict[str, int]:
        return {m: self.dim for m in self.modalities}

    def forward(self, embeddings: dict[str, EncoderOutput], present: dict[str, torch.Tensor],
                output_attentions: bool = False) -> AggregationOutput:
        fused = {}
        for m in self.modalities:
            tokens = valid_tokens(embeddings[m], present[m])
            keep = tokens.mask.any(dim=-1)[:, None]  # [B, 1]
            projected = self.projections[m](masked_mean(tokens.hidden, tokens.mask))  # [B, D]
            fused[m] = EncoderOutput(hidden=torch.where(keep, projected, 0.0)[:, None], mask=keep)
        return AggregationOutput(fused=fused, attentions={} if output_attentions else None)
