"""The one interface every sequence encoder implements.

An encoder turns a batch of raw sequences into token ids (`tokenize`) and token ids into hidden
states with a validity mask (`forward`). Aggregation and heads only ever see `EncoderOutput`.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

import torch
from torch import nn

EncoderKind = Literal["nucleotide_transformer", "esm2", "enformer", "borzoi"]
CropRule = Literal["center", "start", "end"]

logger = logging.getLogger(__name__)


@dataclass
class EncoderConfig:
    """How to build one encoder.

    `architecture` holds the underlying model's own hyper-parameters (NT-v2 / ESM-2 config fields,
    `Enformer.from_hparams` kwargs, ...) and is used for `init="random"`; `checkpoint` (a Hugging
    Face id or a local directory) is used for `init="pretrained"`.
    """

    kind: EncoderKind
    init: Literal["pretrained", "random"] = "random"
    checkpoint: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    # frozen: no gradients; full: every parameter trains; last_n: only the last `trainable_layers`.
    train_mode: Literal["frozen", "full", "last_n"] = "full"
    trainable_layers: int = 0
    # Index into the hidden states of every layer (0 = embeddings, -1 = last layer).
    hidden_layer: int = -1
    # Longest input in sequence units (bases / residues); None = the encoder's own limit.
    max_length: int | None = None
    # Which part of a too-long input is kept: RNA keeps its 3' end, protein its N-terminus,
    # DNA stays centred on the TSS. None = the modality's default (set by the model builder).
    crop: CropRule | None = None


@dataclass
class EncoderOutput:
    hidden: torch.Tensor  # [B, L, D] float
    mask: torch.Tensor  # [B, L] bool, True on tokens that carry sequence


class SequenceEncoder(nn.Module, ABC):
    """Base class: subclasses set `output_dim` and `max_length` and implement both methods."""

    config: EncoderConfig
    output_dim: int  # D of `EncoderOutput.hidden`
    max_length: int  # longest input in sequence units before cropping
    crop_rule: CropRule
    # Crops so far: sequences cropped, and sequence units (bases, residues) they lost.
    cropped_sequences: int = 0
    cropped_units: int = 0

    @abstractmethod
    def tokenize(self, sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        """Raw sequences -> padded model inputs (dict of [B, ...] tensors), cropped by the rule."""

    @abstractmethod
    def forward(self, inputs: dict[str, torch.Tensor]) -> EncoderOutput:
        """Model inputs from `tokenize` -> hidden states [B, L, D] and mask [B, L]."""

    def crop_batch(self, sequences: Sequence[str], noun: str) -> list[str]:
        """Each sequence cropped to `max_length` units by `crop_rule`; crops counted and logged."""
        kept = [crop_sequence(sequence, self.max_length, self.crop_rule) for sequence in sequences]
        cropped = sum(len(k) < len(s) for k, s in zip(kept, sequences))
        lost = sum(map(len, sequences)) - sum(map(len, kept))
        self.count_crops(cropped, len(sequences), noun, lost)
        return kept

    def count_crops(self, cropped: int, total: int, noun: str, lost_units: int = 0) -> None:
        """Add `cropped` of `total` sequences (`noun`, e.g. "proteins") to the counts; log them."""
        if not cropped:
            return
        self.cropped_sequences += cropped
        self.cropped_units += lost_units
        logger.info("%s: cropped %d of %d %s (rule %s, max_length %d); %d so far",
                    self.config.kind, cropped, total, noun, self.crop_rule, self.max_length,
                    self.cropped_sequences)

    def fingerprint(self) -> str:
        """Stable identity of this encoder's configuration (for embedding caches)."""
        return hashlib.sha256(repr(sorted(asdict(self.config).items())).encode()).hexdigest()[:16]

    def content_key(self, sequence: str) -> str:
        """Stable key of (encoder configuration, input sequence), e.g. for an embedding cache."""
        return hashlib.sha256(f"{self.fingerprint()}:{sequence}".encode()).hexdigest()


CroppedT = TypeVar("CroppedT", str, list[int])


def crop_sequence(sequence: CroppedT, max_length: int, rule: CropRule) -> CroppedT:
    """Keep `max_length` units of `sequence` (a string, or token ids): its start, end or centre."""
    if len(sequence) <= max_length:
        return sequence
    if rule == "start":
        return sequence[:max_length]
    if rule == "end":
        return sequence[-max_length:]
    # Centre: drop equally from both sides (one more from the end when odd): len//2 stays central.
    left = (len(sequence) - max_length) // 2
    return sequence[left : left + max_length]
