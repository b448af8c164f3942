"""What ESM-2 and NT-v2 share: a transformers `EsmModel` backbone, run layer by layer.

Hidden states: `hidden_layer` indexes [embeddings, layer 1, ..., layer N] as transformers'
`output_hidden_states` does; the last one has the final LayerNorm applied (`last_hidden_state`),
intermediate ones are the raw residual stream. Layers after the selected one are never run.
Train modes see the embeddings as the stem, the used layers as the layers, and the final LayerNorm
as the tail (it belongs to the last layer's output). The output mask is True on sequence tokens:
special tokens (`<cls>`, `<eos>`) and padding are False.

Attention: transformers' ESM attention (rotary, the padding mask added to the logits) through its
`sdpa` implementation, i.e. `torch.nn.functional.scaled_dot_product_attention`, which picks a fused
kernel where the device has one and never stores the [B, H, L, L] weights. Only
`forward_with_attentions` (attention analysis) switches the backbone to transformers' `eager`
implementation, which computes the weights explicitly, for that one call: a forward hook on each
layer's `attention.self` takes them, and `sdpa` is restored afterwards, even on an error.

Attribution: the input representation (`SequenceEncoder.input_representations`) is the embedding
layer's output [B, L, D], after ESM-2's token-dropout rescaling, one row per token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import EsmModel
from transformers.models.esm.modeling_esm import RotaryEmbedding

from isoformer.encoders.base import EncoderOutput, SequenceEncoder
from isoformer.encoders.train_modes import any_trainable, apply_train_mode, resolve_hidden_layer

# LoRA's default: the attention's query, key, value and output projections (not the feed-forward's
# `output.dense`).
ESM_LORA_TARGETS = ("query", "key", "value", "attention.output.dense")


class EsmBackboneEncoder(SequenceEncoder):
    """Base of the ESM-architecture encoders; subclasses tokenize and call `attach_backbone`."""

    backbone: EsmModel
    special_token_ids: tuple[int, ...]  # left out of the output mask

    def attach_backbone(self, backbone: EsmModel) -> None:
        """Use `backbone` (no pooler) up to `config.hidden_layer`; set the train mode."""
        self.backbone = backbone
        # Pinned rather than left to transformers' default, which may fall back to eager.
        backbone.set_attn_implementation("sdpa")
        backbone.contact_head = None  # predicts contacts from attention maps; unused here
        if self.config.gradient_checkpointing:
            # transformers' per-layer checkpointing: active in train mode; without gradients
            # torch's checkpoint stores nothing and recomputes nothing.
            backbone.gradient_checkpointing_enable({"use_reentrant": False})
        # A plain list, not submodules: the backbone already owns them.
        self._rotary_embeddings = [m for m in backbone.modules() if isinstance(m, RotaryEmbedding)]
        model_config = backbone.config
        self.output_dim = model_config.hidden_size
        self.num_layers = model_config.num_hidden_layers
        self.output_layer = resolve_hidden_layer(
            self.config.kind, self.config.hidden_layer, self.num_layers + 1,
            f"0 = embeddings, 1..{self.num_layers} = layers",
        )
        final_norm = backbone.encoder.emb_layer_norm_after
        apply_train_mode(
            self.config.kind, self.config, backbone, stem=[backbone.embeddings],
            layers=list(backbone.encoder.layer[: self.output_layer]),
            tail=[final_norm] if self.output_layer == self.num_layers else [],
            lora_targets=ESM_LORA_TARGETS,
        )

    exposes_attention = True

    def forward_with_attentions(
        self,
        inputs: dict[str, torch.Tensor],
        reduce: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> EncoderOutput:
        """`forward` through the eager attention, with each layer's weights [B, H, L, L] (or
        `reduce(layer_index, weights)`) in `attentions`, one entry per layer run (see the base)."""
        backbone = self.backbone
        layers = list(backbone.encoder.layer[: self.output_layer])
        captured: dict[int, torch.Tensor] = {}

        def capture(index: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, output: tuple[torch.Tensor, ...]) -> None:
                weights = output[1]  # eager_attention_forward's softmax, [B, H, L, L]
                captured[index] = weights if reduce is None else reduce(index, weights)
            return hook

        previous = backbone.config._attn_implementation
        handles = [layer.attention.self.register_forward_hook(capture(index))
                   for index, layer in enumerate(layers)]
        try:
            backbone.set_attn_implementation("eager")
            output = self.forward(inputs)
        finally:
            for handle in handles:
                handle.remove()
            backbone.set_attn_implementation(previous)
        # A recomputing (checkpointed) pass calls a hook twice: the entry per layer stays one.
        output.attentions = tuple(captured[index] for index in range(len(layers)))
        return output

    def forward(self, inputs: dict[str, torch.Tensor]) -> EncoderOutput:
        input_ids = inputs["input_ids"]  # [B, L]
        attention_mask = inputs["attention_mask"]  # [B, L] bool, True on every non-pad token
        backbone = self.backbone
        if not torch.is_inference_mode_enabled():
            self._drop_inference_rotary_tables()
        with torch.set_grad_enabled(self.records_graph(any_trainable(backbone))):
            # ESM-2's token_dropout rescales embeddings by the share of <mask> among real tokens.
            hidden = self.capture_input(
                backbone.embeddings(input_ids=input_ids, attention_mask=attention_mask)
            )  # [B, L, D]
            # Additive mask [B, 1, 1, L]: no token attends to padding.
            extended_mask = backbone.get_extended_attention_mask(
                attention_mask.long(), input_ids.shape
            )
            for layer in backbone.encoder.layer[: self.output_layer]:
                hidden = layer(hidden, attention_mask=extended_mask)  # [B, L, D]
            if self.output_layer == self.num_layers:
                hidden = backbone.encoder.emb_layer_norm_after(hidden)
        special = torch.isin(input_ids, torch.tensor(self.special_token_ids,
                                                     device=input_ids.device))
        return EncoderOutput(hidden=hidden, mask=attention_mask & ~special)

    def _drop_inference_rotary_tables(self) -> None:
        """transformers' rotary embeddings cache their cos / sin tables per sequence length; a
        table made under `torch.inference_mode` (validation, prediction) cannot enter a backward
        pass, so a training batch of the same length would fail. Such tables are rebuilt."""
        for rotary in self._rotary_embeddings:
            cached = getattr(rotary, "_cos_cached", None)
            if cached is not None and cached.is_inference():
                rotary._seq_len_cached = None
