"""What a pretraining is asked to do: its settings, the preset's resolved encoder, the summary."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isoformer.constants import MODALITIES
from isoformer.data.dataset import read_metadata
from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.mlm import Masking
from isoformer.errors import IsoformerError
from isoformer.model.config import ModelConfig, apply_overrides, load_preset

# The encoder kinds each modality can pretrain (`isoformer.encoders.mlm` objectives).
MODALITY_KINDS = {"dna": ("nucleotide_transformer", "enformer"),
                  "rna": ("nucleotide_transformer",), "protein": ("esm2",)}


@dataclass
class PretrainConfig:
    """Pretraining settings (overridable as `pretrain.<field>=value`)."""

    max_steps: int = 2000
    batch_size: int = 16
    lr: float = 5e-4  # peak, after a linear warm-up; then inverse square-root decay (NT-v2's)
    warmup_steps: int = 100
    weight_decay: float = 0.01
    gradient_clip_val: float | None = 1.0
    mask_rate: float = 0.15
    mask_token_share: float = 0.8
    random_token_share: float = 0.1
    # DNA window (bp) / longest RNA (bases) or protein (residues) window; None = the default of
    # the modality (the package docstring). An Enformer's window is its max_length.
    length: int | None = None
    eval_every: int = 100  # steps between held-out evaluations (and checkpoints)
    eval_sequences: int = 128  # held-out windows / sequences scored at each evaluation
    val_fraction: float = 0.05  # DNA: the tail of each chromosome held out
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [name for name in ("max_steps", "batch_size", "eval_every", "eval_sequences")
               if getattr(self, name) < 1]
        if self.lr <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            bad.append("lr/warmup_steps/weight_decay")
        if not 0.0 <= self.val_fraction < 1.0 or (self.length is not None and self.length < 1):
            bad.append("val_fraction/length")
        if bad:
            raise IsoformerError(f"pretrain: {', '.join(bad)} out of range")
        self.masking()  # checks the rates

    def masking(self) -> Masking:
        return Masking(self.mask_rate, self.mask_token_share, self.random_token_share)


@dataclass
class PretrainRunConfig:
    """The preset's model (its encoders; `model.*` overrides) and the pretraining settings."""

    model: ModelConfig
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass(frozen=True)
class PretrainSummary:
    out: Path
    modality: str
    kind: str
    objective: str
    steps: int  # optimiser steps done in all sessions
    resumed_from: int | None  # the step this session started from (None: a fresh start)
    heldout_loss: float
    heldout_accuracy: float
    initial_heldout_loss: float | None  # at step 0 (the initial weights)
    initial_heldout_accuracy: float | None
    chance_loss: float  # held-out cross-entropy of the training label frequencies (unigram)
    chance_accuracy: float  # held-out accuracy of always guessing the most frequent label
    uniform_accuracy: float  # 1 / classes
    heldout_positions: int  # masked positions the held-out figures average over
    train_sequences: int | None  # distinct sequences (RNA, protein); None for genome windows
    heldout_sequences: int
    length: int  # window / crop length in sequence units
    unit: str
    seconds: float  # training time of all sessions
    train_overrides: list[str]  # what `isoformer train` needs to load DIR

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        return data

    def describe(self) -> str:
        return (
            f"pretrained the {self.modality} encoder ({self.kind}: {self.objective}) for "
            f"{self.steps} steps: held-out loss {self.heldout_loss:.3f} (chance "
            f"{self.chance_loss:.3f}), accuracy {self.heldout_accuracy:.3f} (chance "
            f"{self.chance_accuracy:.3f}); train with {' '.join(self.train_overrides)}"
        )


def resolve_pretrain_config(
    modality: str, preset: str, overrides: Sequence[str] = (), **explicit: Any
) -> tuple[PretrainRunConfig, EncoderConfig]:
    """Preset -> overrides (`model.*`, `pretrain.*`) -> explicit pretrain fields; and (a copy
    of) the modality's encoder config, checked to have an objective."""
    if modality not in MODALITIES:
        raise IsoformerError(
            f"unknown modality {modality!r}: choose one of {', '.join(MODALITIES)}"
        )
    model = load_preset(preset).model
    config = apply_overrides(PretrainRunConfig(model=model), list(overrides))
    changes = {name: value for name, value in explicit.items() if value is not None}
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, **changes))
    if modality not in config.model.encoders:
        raise IsoformerError(f"preset {preset!r} has no {modality} encoder")
    encoder = copy.deepcopy(config.model.encoders[modality])
    if encoder.kind not in MODALITY_KINDS[modality]:
        hint = (" (the DNA encoders with an objective: NT-v2, e.g. --preset tiny-nt, and "
                "Enformer)" if modality == "dna" else "")
        raise IsoformerError(
            f"--modality {modality}: preset {preset!r} has a {encoder.kind} {modality} encoder, "
            f"which has no masked pretraining objective here{hint}"
        )
    return config, encoder


def dna_length(config: PretrainRunConfig, data: Path | None) -> int:
    """The DNA window (bp): `pretrain.length`, else the model's `dna_length`, else the
    dataset's, else 1024."""
    if config.pretrain.length is not None:
        return config.pretrain.length
    if config.model.dna_length is not None:
        return config.model.dna_length
    if data is not None:
        return int(read_metadata(data)["dna_length"])
    return 1024
