"""ESM-2 protein language model behind the `SequenceEncoder` interface, via `transformers.EsmModel`.

Built from `EncoderConfig(kind="esm2", ...)`:
- `init="random"`: `architecture` holds `EsmConfig` fields, optionally `preset` (`tiny`, `paper`)
  with field overrides, e.g. `{"preset": "paper", "num_hidden_layers": 2}`. Without a preset the
  fields override the paper's ESM-2 150M.
- `init="pretrained"`: `checkpoint` is any ESM-2 Hugging Face id (default paper model
  `facebook/esm2_t30_150M_UR50D`) or a local directory holding its files.

Length: at most 1,024 residues (ESM-2's 1,026 positions less `<cls>` and `<eos>`); a longer protein
is cropped by the configured rule, by default "start" (keep the N-terminus). Crops are counted in
`crops` (in residues).

Mask: True on residues only. `<cls>`, `<eos>` and padding are False, so mean-pooling over the
mask averages residues as the paper does. An empty protein (a non-coding transcript) is tokenized
as `[<cls>, <eos>]` and its row of the mask is all False: downstream the protein modality is
missing for that transcript, never attended as padding.

Hidden states and train modes: see `esm_backbone`, shared with NT-v2.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import EsmConfig, EsmModel

from isoformer.encoders.base import CropRule, EncoderConfig, crop_sequence
from isoformer.encoders.esm_backbone import EsmBackboneEncoder
from isoformer.encoders.loading import load_checkpoint, require_every_weight
from isoformer.encoders.tokenizers import ProteinTokenizer, pad_token_ids
from isoformer.errors import IsoformerError

logger = logging.getLogger(__name__)

ESM2_CHECKPOINT = "facebook/esm2_t30_150M_UR50D"
# 1,026 positions = 1,024 residues + <cls> + <eos>.
ESM2_MAX_RESIDUES = 1024

# Fields shared by every ESM-2 model (the Hub config.json of esm2_t30_150M_UR50D).
_ESM2_COMMON: dict[str, Any] = dict(
    vocab_size=33, pad_token_id=1, mask_token_id=32, max_position_embeddings=1026,
    position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
    layer_norm_eps=1e-5, hidden_act="gelu", hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
ESM2_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(_ESM2_COMMON, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64),
    "paper": dict(_ESM2_COMMON, hidden_size=640, num_hidden_layers=30, num_attention_heads=20,
                  intermediate_size=2560),
}


def esm2_config(architecture: dict[str, Any]) -> EsmConfig:
    """`EsmConfig` from an architecture dict: optional `preset` (default `paper`) + overrides."""
    fields = dict(architecture)
    preset = fields.pop("preset", "paper")
    if preset not in ESM2_PRESETS:
        raise IsoformerError(
            f"unknown ESM-2 preset {preset!r} (choose from {', '.join(ESM2_PRESETS)})"
        )
    return EsmConfig(**{**ESM2_PRESETS[preset], **fields})


def _load_esm2(checkpoint: str) -> EsmModel:
    model, info = EsmModel.from_pretrained(
        checkpoint, add_pooling_layer=False, output_loading_info=True
    )
    # The contact head is not on the embedding path; everything else must come from the checkpoint.
    require_every_weight(
        "esm2", checkpoint, info, "an ESM-2", optional=lambda key: key.startswith("contact_head")
    )
    logger.info("esm2: loaded %s (%d layers, width %d)", checkpoint,
                model.config.num_hidden_layers, model.config.hidden_size)
    return model


def build_esm2(config: EncoderConfig) -> EsmModel:
    """The ESM-2 backbone (no pooler) that `config` describes: random or pretrained."""
    if config.init == "pretrained":
        return load_checkpoint("esm2", config.checkpoint or ESM2_CHECKPOINT, _load_esm2)
    try:
        model_config = esm2_config(config.architecture)
    except TypeError as error:
        raise IsoformerError(f"esm2 architecture: {error}") from error
    return EsmModel(model_config, add_pooling_layer=False)


class EsmEncoder(EsmBackboneEncoder):
    """ESM-2 embeddings of proteins: hidden [B, L, D] over `<cls>` residues `<eos>`, mask [B, L]."""

    unit = "residues"

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.kind != "esm2":
            raise IsoformerError(f"EsmEncoder cannot build kind {config.kind!r}")
        self.config = config
        self.tokenizer = ProteinTokenizer()
        self.special_token_ids = (self.tokenizer.cls_token_id, self.tokenizer.eos_token_id)
        backbone = build_esm2(config)
        model_config = backbone.config
        if model_config.vocab_size != self.tokenizer.vocab_size:
            raise IsoformerError(
                f"esm2: vocabulary of {model_config.vocab_size} tokens, expected ESM-2's "
                f"{self.tokenizer.vocab_size}"
            )
        limit = min(ESM2_MAX_RESIDUES, model_config.max_position_embeddings - 2)
        if config.max_length is not None and not 0 < config.max_length <= limit:
            raise IsoformerError(f"esm2: max_length {config.max_length} is outside 1..{limit}")
        self.max_length = config.max_length or limit
        self.crop_rule: CropRule = config.crop or "start"
        self.attach_backbone(backbone)
        self.train()

    def tokenize(self, sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        """Crop to `max_length` residues, then ESM-2 ids with `<cls>`/`<eos>`.

        Returns input_ids (LongTensor [B, L], padded with 1) and attention_mask (BoolTensor [B, L]).
        """
        token_ids = [
            self.tokenizer.encode(protein, record=f"protein {index}")
            for index, protein in enumerate(self.crop_batch(sequences))
        ]
        input_ids, attention_mask = pad_token_ids(token_ids, self.tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def token_spans(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """`<cls>` (0, 0), one residue per token over the residues the crop keeps, `<eos>` (0, 0):
        [L + 2, 2] per sequence (see the base)."""
        spans = []
        for protein in sequences:
            kept = np.array(crop_sequence(list(range(len(protein))), self.max_length,
                                          self.crop_rule), dtype=np.int64)
            special = np.zeros((1, 2), dtype=np.int64)
            spans.append(np.concatenate([special, np.stack([kept, kept + 1], axis=1), special]))
        return spans

    @classmethod
    def from_pretrained(cls, checkpoint: str = ESM2_CHECKPOINT, **config_fields: Any) -> EsmEncoder:
        """Shortcut: an encoder over official ESM-2 weights (a Hugging Face id or a directory)."""
        return cls(EncoderConfig(kind="esm2", init="pretrained", checkpoint=checkpoint,
                                 **config_fields))
