"""The one fusion interface: token embeddings per modality in, fused query embeddings out.

Every kind (cross_attention, linear, concat, perceiver, c_abstractor) takes its own config
(`isoformer.model.aggregation.config.AggregationConfig`, a union told apart by `kind`) and the
encoders' widths, and returns per query modality hidden [B, L, D] + mask; `output_dims` gives the
head its input widths. A modality missing from a row (flag off, or no valid token) contributes
nothing to that row: its values are never read there, so any garbage in them gives the same
output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from isoformer.constants import MODALITIES
from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.aggregation.config import DEFAULT_MAX_DIM, AggregationConfig


@dataclass
class AggregationOutput:
    # Per query modality: hidden [B, L_q, D_q] and mask [B, L_q] (False on padding, and on every
    # token of a row where that modality is missing).
    fused: dict[str, EncoderOutput]
    # Filled on request: "query->key" -> one [B, heads, L_q, L_k] map per layer (zeros where the
    # key modality is missing).
    attentions: dict[str, list[torch.Tensor]] | None = None


def rows_with_tokens(output: EncoderOutput, present: torch.Tensor) -> torch.Tensor:
    """[B] bool: the modality is present in the row and has at least one valid token."""
    return present.to(output.mask.device) & output.mask.any(dim=-1)


def valid_tokens(output: EncoderOutput, present: torch.Tensor) -> EncoderOutput:
    """The modality with rows that lack it fully masked and every masked value set to zero."""
    mask = output.mask & rows_with_tokens(output, present)[:, None]  # [B, L]
    return EncoderOutput(hidden=torch.where(mask[..., None], output.hidden, 0.0), mask=mask)


class Aggregator(nn.Module, ABC):
    """Base class: fuses the enabled modalities' embeddings (given in `input_dims`, any order).
    A kind's config without `query_modalities` makes every modality a query."""

    def __init__(self, config: AggregationConfig, input_dims: dict[str, int]):
        super().__init__()
        self.config = config
        # Canonical order (dna, rna, protein) everywhere: keys are visited and outputs listed in it.
        self.modalities: tuple[str, ...] = tuple(m for m in MODALITIES if m in input_dims)
        self.input_dims = {m: input_dims[m] for m in self.modalities}
        if getattr(config, "query_modalities", "all") == "dna":
            if "dna" not in self.modalities:
                raise IsoformerError("aggregation: query_modalities=dna needs the dna modality")
            self.query_modalities: tuple[str, ...] = ("dna",)
        else:
            self.query_modalities = self.modalities

    def common_dim(self) -> int:
        """The kind's `dim` (the width every modality is brought to); when unset, the widest
        input's, at most `DEFAULT_MAX_DIM` (512)."""
        dim = getattr(self.config, "dim", None)
        return dim if dim is not None else min(max(self.input_dims.values()), DEFAULT_MAX_DIM)

    @property
    def output_dims(self) -> dict[str, int]:
        """Width of each query modality's fused embeddings (the head's inputs)."""
        return {m: self.input_dims[m] for m in self.query_modalities}

    @abstractmethod
    def forward(self, embeddings: dict[str, EncoderOutput], present: dict[str, torch.Tensor],
                output_attentions: bool = False) -> AggregationOutput:
        """embeddings: modality -> hidden [B, L_m, D_m] + mask [B, L_m]; present: -> [B] bool."""
