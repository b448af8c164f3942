"""Shared by the encoder wrappers: which layer's states to return and which parameters train.

Every wrapper describes its model as three parts on the path to the returned states: a `stem`
(embeddings, convolution towers), the `layers` that `hidden_layer` and `last_n` count, and a `tail`
that turns the last used layer into the output (a final LayerNorm, Enformer's pointwise block,
Borzoi's U-Net decoder). Parts after the returned layer are never run and never train. LoRA
(`lora`) adapts linear layers inside `layers` only.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from isoformer.encoders.base import EncoderConfig, batchnorms
from isoformer.encoders.lora import add_lora
from isoformer.errors import IsoformerError


def resolve_hidden_layer(kind: str, hidden_layer: int, num_states: int, layout: str) -> int:
    """Python-style index into `num_states` hidden states -> its non-negative position.

    `layout` names the states for the error message, e.g. "0 = embeddings, 1..30 = layers".
    """
    index = hidden_layer if hidden_layer >= 0 else num_states + hidden_layer
    if not 0 <= index < num_states:
        raise IsoformerError(
            f"{kind}: hidden_layer {hidden_layer} is out of range ({layout}; -1 = the last)"
        )
    return index


def apply_train_mode(
    kind: str,
    config: EncoderConfig,
    model: nn.Module,
    stem: Sequence[nn.Module],
    layers: Sequence[nn.Module],
    tail: Sequence[nn.Module],
    lora_targets: Sequence[str],
) -> None:
    """Set `requires_grad` on the model parts by `config.train_mode`.

    frozen: nothing trains. full: stem, layers and tail train. last_n: the last
    `config.trainable_layers` of `layers` train, and the tail with them (it only transforms
    their output). lora: adapters on the linear layers of `layers` that `lora_targets` (or
    `config.lora_target_modules`) names train, nothing else. The rest of `model` (layers after the
    returned one, parts before the heads) never trains. `config.freeze_batchnorm` then takes the
    BatchNorm weights out of whatever trains.
    """
    model.requires_grad_(False)
    if config.train_mode == "lora":
        add_lora(kind, config, model, layers, lora_targets)
    elif config.train_mode != "frozen":
        for part in _trainable_parts(kind, config, stem, layers, tail):
            part.requires_grad_(True)
    if config.freeze_batchnorm:
        norms = batchnorms(model)
        if not norms:
            raise IsoformerError(f"{kind}: freeze_batchnorm is set, but {kind} has no BatchNorm")
        for norm in norms:  # SequenceEncoder.train keeps them in eval mode
            norm.requires_grad_(False)


def _trainable_parts(
    kind: str,
    config: EncoderConfig,
    stem: Sequence[nn.Module],
    layers: Sequence[nn.Module],
    tail: Sequence[nn.Module],
) -> list[nn.Module]:
    if config.train_mode == "full":
        return [*stem, *layers, *tail]
    if not 0 < config.trainable_layers <= len(layers):
        raise IsoformerError(
            f"{kind}: trainable_layers must be in 1..{len(layers)} for train_mode='last_n' "
            f"(got {config.trainable_layers})"
        )
    return [*layers[len(layers) - config.trainable_layers :], *tail]


def any_trainable(module: nn.Module) -> bool:
    return any(parameter.requires_grad for parameter in module.parameters())
