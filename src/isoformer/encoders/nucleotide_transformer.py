"""Nucleotide Transformer v2 behind the `SequenceEncoder` interface (DNA, and RNA with U read as T).

Built from `EncoderConfig(kind="nucleotide_transformer", ...)`:
- `init="random"`: `architecture` holds NT-v2 config fields, optionally `preset` (`tiny`, `50m`,
  `100m`, `250m`, `500m`) with field overrides, e.g. `{"preset": "tiny"}` or
  `{"preset": "250m", "num_hidden_layers": 2}`. Without a preset the fields override the 50M model.
- `init="pretrained"`: `checkpoint` is a Hugging Face id or a local directory in the official
  layout (see `modeling_nucleotide_transformer`), loaded without remote code.

Length: the official models take 2,048 tokens including `<cls>`, so `max_length` defaults to
2,047 six-mers = 12,282 bases; a longer input is cropped by the configured rule (default "center")
and crops are counted in `crops` (in bases). N bases and remainders add tokens, so a cropped
sequence that still needs more than 2,048 tokens is cropped again in tokens by the same rule
(counted once). `token_spans` says which bases of the uncropped input each token covers (the
attention analysis maps tokens to transcript regions with it).

Hidden states and train modes: see `esm_backbone`, shared with ESM-2 (the final LayerNorm is the
official model's output). The output mask is True on sequence tokens (not `<cls>`, not padding).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from isoformer.encoders.base import CropRule, EncoderConfig, crop_sequence
from isoformer.encoders.esm_backbone import EsmBackboneEncoder
from isoformer.encoders.loading import load_checkpoint
from isoformer.encoders.modeling_nucleotide_transformer import (
    NucleotideTransformerConfig,
    NucleotideTransformerForMaskedLM,
    load_nucleotide_transformer,
)
from isoformer.encoders.tokenizers import NT_KMER, NucleotideTokenizer, pad_token_ids
from isoformer.errors import IsoformerError

logger = logging.getLogger(__name__)

# Official tokenizer limit (`model_max_length`), `<cls>` included: 2,050 positions = 2,048 tokens
# after the RoBERTa-style position offset of 2.
NT_MAX_TOKENS = 2048


def build_nucleotide_transformer(config: EncoderConfig) -> NucleotideTransformerForMaskedLM:
    """The full NT-v2 model (with LM head) that `config` describes: random or pretrained."""
    if config.init == "pretrained":
        return load_checkpoint(
            "nucleotide_transformer", config.checkpoint, load_nucleotide_transformer
        )
    fields = dict(config.architecture)
    preset = fields.pop("preset", None)
    try:
        model_config = (
            NucleotideTransformerConfig.from_preset(preset, **fields)
            if preset is not None
            else NucleotideTransformerConfig(**fields)
        )
    except TypeError as error:
        raise IsoformerError(f"nucleotide_transformer architecture: {error}") from error
    return NucleotideTransformerForMaskedLM(model_config)


class NucleotideTransformerEncoder(EsmBackboneEncoder):
    """NT-v2 embeddings of nucleotide sequences: hidden [B, L, D] over 6-mer tokens, mask [B, L]."""

    unit = "bases"

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.kind != "nucleotide_transformer":
            raise IsoformerError(f"NucleotideTransformerEncoder cannot build kind {config.kind!r}")
        self.config = config
        self.tokenizer = NucleotideTokenizer()
        self.special_token_ids = (self.tokenizer.cls_token_id,)
        # Only the backbone is on the embedding path: the LM head is dropped.
        backbone = build_nucleotide_transformer(config).esm
        self.max_tokens = min(NT_MAX_TOKENS, backbone.config.max_position_embeddings - 2)
        limit = (self.max_tokens - 1) * NT_KMER
        if config.max_length is not None and not 0 < config.max_length <= limit:
            raise IsoformerError(
                f"nucleotide_transformer: max_length {config.max_length} is outside 1..{limit} "
                f"bases ({self.max_tokens} tokens including <cls>)"
            )
        self.max_length = config.max_length or limit
        self.crop_rule: CropRule = config.crop or "center"
        self.attach_backbone(backbone)
        self.train()

    def tokenize(self, sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        """Crop to `max_length` bases by the crop rule, then 6-mer ids.

        Returns input_ids (LongTensor [B, L], padded with 1) and attention_mask (BoolTensor [B, L]).
        """
        kept = self.crop_batch(sequences)
        token_ids = []
        for index, (sequence, original) in enumerate(zip(kept, sequences)):
            ids = self.tokenizer.encode(sequence, record=f"sequence {index}")
            # N bases and remainders are one token per base, so 12,282 bases can exceed 2,048.
            if len(ids) > self.max_tokens:
                ids = [ids[0], *crop_sequence(ids[1:], self.max_tokens - 1, self.crop_rule)]
                self.crops.cropped += len(sequence) == len(original)  # not counted in bases yet
            token_ids.append(ids)
        input_ids, attention_mask = pad_token_ids(token_ids, self.tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def token_spans(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """Where each token of `tokenize(sequences)` lies in its sequence as given (uncropped).

        Per sequence an int64 array [L_i, 2] of 0-based half-open (start, end) base positions, one
        row per token in `tokenize`'s order (padding excluded): `<cls>` is the empty span (0, 0),
        a 6-mer covers 6 bases, a remainder base or an N one. The crops are `tokenize`'s (bases by
        the crop rule, then tokens by the same rule when N bases or remainders still make too many
        tokens); nothing is counted in `crops`.
        """
        spans = []
        for index, sequence in enumerate(sequences):
            # The positions the base crop keeps: the same rule on the positions themselves.
            kept = crop_sequence(list(range(len(sequence))), self.max_length, self.crop_rule)
            start = kept[0] if kept else 0
            tokens = self.tokenizer.tokenize(sequence[start : start + len(kept)],
                                             record=f"sequence {index}")
            lengths = np.array([len(token) for token in tokens], dtype=np.int64)
            ends = start + np.cumsum(lengths)
            bounds = np.stack([ends - lengths, ends], axis=1)  # [tokens, 2]
            if len(tokens) + 1 > self.max_tokens:
                bounds = bounds[crop_sequence(list(range(len(tokens))), self.max_tokens - 1,
                                              self.crop_rule)]
            spans.append(np.concatenate([np.zeros((1, 2), dtype=np.int64), bounds]))
        return spans

    @classmethod
    def from_pretrained(cls, checkpoint: str, **config_fields) -> NucleotideTransformerEncoder:
        """Shortcut: an encoder over official weights (a Hugging Face id or a local directory)."""
        return cls(
            EncoderConfig(
                kind="nucleotide_transformer", init="pretrained", checkpoint=checkpoint,
                **config_fields,
            )
        )

