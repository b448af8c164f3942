"""`train_mode: lora`: low-rank adapters (peft's LoRA) on linear layers of an encoder's used layers.

The adapters are injected in place (`peft.inject_adapter_in_model`), so the wrapped model keeps its
structure and forward code; each adapted `name` becomes `name.base_layer` (the frozen original)
plus `name.lora_A.default` / `name.lora_B.default`. Only those adapter weights train. Building the
same `EncoderConfig` again wraps the same modules, which is what reloading a saved model relies on
(`IsoFormer.from_pretrained` rebuilds every encoder from its config, then loads the weights).
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from isoformer.encoders.base import EncoderConfig
from isoformer.errors import IsoformerError


def add_lora(
    kind: str,
    config: EncoderConfig,
    model: nn.Module,
    layers: Sequence[nn.Module],
    default_targets: Sequence[str],
) -> None:
    """Adapt the linear layers of `layers` (modules of `model`) that `config.lora_target_modules`
    names (default `default_targets`); freeze everything of `model` but the adapters.

    A target is a module name or the end of one after a dot, relative to `model`, e.g. "query" or
    "attention.output.dense" (the attention output, not the feed-forward's `output.dense`).
    """
    _check_lora_numbers(kind, config)
    if not layers:
        raise IsoformerError(
            f"{kind}: train_mode='lora' needs a transformer layer before hidden_layer "
            f"{config.hidden_layer} to adapt"
        )
    names = {id(module): name for name, module in model.named_modules()}
    candidates = {
        f"{names[id(layer)]}.{name}": module
        for layer in layers for name, module in layer.named_modules() if name
    }
    targets = config.lora_target_modules or list(default_targets)
    adapted: list[str] = []
    for target in targets:
        matched = [name for name in candidates
                   if name == target or name.endswith(f".{target}")]
        if not matched:
            linear = sorted({name.rsplit(".", 1)[-1] for name, module in candidates.items()
                             if isinstance(module, nn.Linear)})
            raise IsoformerError(
                f"{kind}: lora_target_modules entry {target!r} names no module of the used layers "
                f"(their linear layers: {', '.join(linear)})"
            )
        for name in matched:
            if not isinstance(candidates[name], nn.Linear):
                raise IsoformerError(
                    f"{kind}: lora_target_modules entry {target!r} names {name}, a "
                    f"{type(candidates[name]).__name__}; LoRA adapts linear layers"
                )
        adapted += matched
    lora_config = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=sorted(set(adapted)),
    )
    inject_adapter_in_model(lora_config, model)
    model.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.lora_A.requires_grad_(True)
            module.lora_B.requires_grad_(True)


def _check_lora_numbers(kind: str, config: EncoderConfig) -> None:
    if config.lora_rank < 1:
        raise IsoformerError(f"{kind}: lora_rank must be at least 1 (got {config.lora_rank})")
    if config.lora_alpha <= 0:
        raise IsoformerError(f"{kind}: lora_alpha must be positive (got {config.lora_alpha})")
    if not 0 <= config.lora_dropout < 1:
        raise IsoformerError(
            f"{kind}: lora_dropout must be in [0, 1) (got {config.lora_dropout})"
        )
