"""Nucleotide Transformer v2 in PyTorch, loadable from the official checkpoints without remote code.

NT-v2 is transformers' ESM architecture (rotary positions, pre-LayerNorm blocks, final LayerNorm)
with one change: a bias-free SwiGLU feed-forward instead of ESM's GELU feed-forward with bias. We
therefore reuse `EsmConfig` / `EsmForMaskedLM` and replace only each layer's `intermediate` and
`output` modules, so every parameter keeps the name and shape of the official checkpoints
(`InstaDeepAI/nucleotide-transformer-v2-*`): `esm.embeddings.word_embeddings`,
`esm.encoder.layer.N.attention.self.{query,key,value}`,
`...attention.self.rotary_embeddings.inv_freq`, `...attention.output.dense`,
`...attention.LayerNorm`, `...intermediate.dense` (the 2 x FFN gated projection),
`...output.dense`, `...LayerNorm`, `esm.encoder.emb_layer_norm_after`,
`esm.contact_head.regression`, `lm_head.*`. The checkpoints also carry an unused learned
`esm.embeddings.position_embeddings.weight` (rotary models ignore it), which transformers' ESM
classes skip on load.

Attention is therefore ESM's (rotary positions, query scaled before rotation), run through
transformers' `sdpa` implementation (`torch.nn.functional.scaled_dot_product_attention`), which
the encoder wrapper pins (`esm_backbone`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import EsmConfig, EsmForMaskedLM
from transformers.models.esm.modeling_esm import EsmOutput

from isoformer.encoders.loading import require_every_weight
from isoformer.errors import IsoformerError

logger = logging.getLogger(__name__)

# Architectural numbers of the published multi-species models (NT paper, Hub config.json files;
# 250M's depth of 24 is from the paper's table, not checked against its config.json here) and a
# `tiny` one for tests and the embedded default. Every preset shares the NT-v2 defaults below.
NT_V2_PRESETS: dict[str, dict[str, int]] = {
    name: dict(
        hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
        intermediate_size=ffn,
    )
    for name, width, depth, heads, ffn in (
        ("tiny", 32, 2, 4, 64),
        ("50m", 512, 12, 16, 2048),
        ("100m", 512, 22, 16, 2048),
        ("250m", 768, 24, 16, 3072),
        ("500m", 1024, 29, 16, 4096),
    )
}

NT_V2_CHECKPOINTS: dict[str, str] = {
    size: f"InstaDeepAI/nucleotide-transformer-v2-{size}-multi-species"
    for size in ("50m", "100m", "250m", "500m")
}


class NucleotideTransformerConfig(EsmConfig):
    """`EsmConfig` with NT-v2's defaults (the 50M model) and its one extra field, `add_bias_fnn`.

    Field names are those of the official `config.json`, so it loads with `from_pretrained`:
    vocabulary 4,107 (pad 1, mask 2), 2,050 positions (2,048 tokens after the RoBERTa-style offset
    of 2), rotary positions, LayerNorm eps 1e-12, no token dropout, no embedding LayerNorm, untied
    LM head, no dropout, and `add_bias_fnn=False` (the SwiGLU projections have no bias).
    """

    def __init__(
        self,
        vocab_size: int = 4107,
        mask_token_id: int = 2,
        pad_token_id: int = 1,
        hidden_size: int = 512,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 16,
        intermediate_size: int = 2048,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        max_position_embeddings: int = 2050,
        layer_norm_eps: float = 1e-12,
        position_embedding_type: str = "rotary",
        emb_layer_norm_before: bool = False,
        token_dropout: bool = False,
        add_bias_fnn: bool = False,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            vocab_size=vocab_size,
            mask_token_id=mask_token_id,
            pad_token_id=pad_token_id,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            hidden_dropout_prob=hidden_dropout_prob,
            attention_probs_dropout_prob=attention_probs_dropout_prob,
            max_position_embeddings=max_position_embeddings,
            layer_norm_eps=layer_norm_eps,
            position_embedding_type=position_embedding_type,
            emb_layer_norm_before=emb_layer_norm_before,
            token_dropout=token_dropout,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.add_bias_fnn = add_bias_fnn

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> NucleotideTransformerConfig:
        """A named preset (`tiny`, `50m`, `100m`, `250m`, `500m`) with field overrides."""
        if name not in NT_V2_PRESETS:
            raise IsoformerError(
                f"unknown NT-v2 preset {name!r} (choose from {', '.join(NT_V2_PRESETS)})"
            )
        return cls(**{**NT_V2_PRESETS[name], **overrides})


class NucleotideTransformerIntermediate(nn.Module):
    """SwiGLU gate: `dense` projects D -> 2 x FFN; silu(first half) * second half -> FFN."""

    def __init__(self, config: NucleotideTransformerConfig):
        super().__init__()
        self.dense = nn.Linear(
            config.hidden_size, 2 * config.intermediate_size, bias=config.add_bias_fnn
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, FFN]
        gate, value = self.dense(hidden_states).chunk(2, dim=-1)
        return F.silu(gate) * value


class NucleotideTransformerOutput(EsmOutput):
    """ESM's FFN output (dense, dropout, residual) with NT-v2's optional bias."""

    def __init__(self, config: NucleotideTransformerConfig):
        super().__init__(config)
        self.dense = nn.Linear(
            config.intermediate_size, config.hidden_size, bias=config.add_bias_fnn
        )


class NucleotideTransformerForMaskedLM(EsmForMaskedLM):
    """NT-v2 with its masked-LM head, in the official checkpoint layout."""

    config_class = NucleotideTransformerConfig
    config: NucleotideTransformerConfig

    def __init__(self, config: NucleotideTransformerConfig):
        super().__init__(config)
        # ESM builds GELU feed-forwards; NT-v2's are bias-free SwiGLU under the same names.
        for layer in self.esm.encoder.layer:
            layer.intermediate = NucleotideTransformerIntermediate(config)
            layer.output = NucleotideTransformerOutput(config)
        self.post_init()


def load_nucleotide_transformer(checkpoint: str) -> NucleotideTransformerForMaskedLM:
    """Load official NT-v2 weights from a Hugging Face id or a local directory, without remote code.

    The directory holds `config.json` and `model.safetensors` (or `pytorch_model.bin`) as on the
    Hub. Every parameter of the model must come from the checkpoint: a missing or mis-shaped
    tensor is an error rather than a silently random weight.
    """
    # A failed download or unreadable directory raises OSError: `load_checkpoint` reports it.
    model, info = NucleotideTransformerForMaskedLM.from_pretrained(
        checkpoint, output_loading_info=True
    )
    require_every_weight(
        "nucleotide_transformer", checkpoint, info, "an NT-v2",
        optional=lambda key: key in model._tied_weights_keys,
    )
    if info["unexpected_keys"]:
        logger.warning(
            "%s: ignored tensors not used by NT-v2: %s", checkpoint, info["unexpected_keys"]
        )
    logger.info("loaded NT-v2 from %s (%d layers, width %d)", checkpoint,
                model.config.num_hidden_layers, model.config.hidden_size)
    return model
