"""The one place an encoder kind becomes a class, and the named architecture presets.

Each kind's module is imported only when that kind is built (borzoi-pytorch, for one, reads files
at import time).

    build_encoder(EncoderConfig(kind="esm2", architecture=encoder_architecture("esm2", "tiny")))
    build_encoder(encoder_config("enformer", "tiny"))  # tiny architecture + its short window
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import replace
from typing import Any

from isoformer.encoders.base import EncoderConfig, SequenceEncoder
from isoformer.errors import IsoformerError

# kind -> (module, encoder class, presets table)
_ENCODERS: dict[str, tuple[str, str, str]] = {
    "nucleotide_transformer": (
        "isoformer.encoders.nucleotide_transformer", "NucleotideTransformerEncoder", "",
    ),
    "esm2": ("isoformer.encoders.esm", "EsmEncoder", "ESM2_PRESETS"),
    "enformer": ("isoformer.encoders.enformer", "EnformerEncoder", "ENFORMER_PRESETS"),
    "borzoi": ("isoformer.encoders.borzoi", "BorzoiEncoder", "BORZOI_PRESETS"),
}
ENCODER_KINDS: tuple[str, ...] = tuple(_ENCODERS)
PRESET_SIZES: tuple[str, ...] = ("tiny", "paper")

# NT-v2's `paper` size is the RNA encoder of the paper (250M); its module names sizes by parameters.
_NT_PRESET_NAMES = {"tiny": "tiny", "paper": "250m"}
# The tiny DNA encoders take a short window so tests and the embedded default run on a CPU.
_TINY_WINDOWS = {"enformer": 2048, "borzoi": 1024}


def _encoder_entry(kind: str) -> tuple[str, str, str]:
    if kind not in _ENCODERS:
        raise IsoformerError(
            f"unknown encoder kind {kind!r} (known: {', '.join(ENCODER_KINDS)})"
        )
    return _ENCODERS[kind]


def build_encoder(config: EncoderConfig) -> SequenceEncoder:
    """The encoder `config.kind` names, built from `config` (random or pretrained)."""
    module_name, class_name, _ = _encoder_entry(config.kind)
    encoder_class = getattr(importlib.import_module(module_name), class_name)
    return encoder_class(config)


def encoder_architecture(kind: str, size: str) -> dict[str, Any]:
    """A copy of the named preset's architecture dict (`tiny` or `paper`), ready for YAML."""
    module_name, _, table = _encoder_entry(kind)
    if size not in PRESET_SIZES:
        raise IsoformerError(f"unknown preset size {size!r} (known: {', '.join(PRESET_SIZES)})")
    if kind == "nucleotide_transformer":
        from isoformer.encoders.modeling_nucleotide_transformer import NT_V2_PRESETS

        return dict(NT_V2_PRESETS[_NT_PRESET_NAMES[size]])
    return copy.deepcopy(getattr(importlib.import_module(module_name), table)[size])


def encoder_config(kind: str, size: str, **fields: Any) -> EncoderConfig:
    """An `EncoderConfig` with the named architecture (random weights) and the preset's window.

    `fields` override any `EncoderConfig` field, e.g. `train_mode="frozen"`.
    """
    architecture = encoder_architecture(kind, size)
    config = EncoderConfig(kind=kind, architecture=architecture)  # type: ignore[arg-type]
    if size == "tiny" and kind in _TINY_WINDOWS:
        config.max_length = _TINY_WINDOWS[kind]
    return replace(config, **fields)
