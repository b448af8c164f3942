"""The one interface every sequence encoder implements.

An encoder turns a batch of raw sequences into token ids (`tokenize`) and token ids into hidden
states with a validity mask (`forward`). Aggregation and heads only ever see `EncoderOutput`.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from isoformer.errors import IsoformerError

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
    # frozen: no gradients; full: every parameter trains; last_n: only the last `trainable_layers`;
    # lora: only low-rank adapters (peft) on the used layers' attention projections train.
    train_mode: Literal["frozen", "full", "last_n", "lora"] = "full"
    trainable_layers: int = 0
    # LoRA (train_mode="lora"): rank r, scale alpha / r, dropout on the adapters' input, and the
    # linear layers adapted (module names or their ends, e.g. "query"); None = the kind's default
    # (ESM-2, NT-v2: query, key, value, attention.output.dense; Enformer, Borzoi: to_q, to_k,
    # to_v, to_out).
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None
    # Index into the hidden states of every layer (0 = embeddings, -1 = last layer).
    hidden_layer: int = -1
    # Longest input in sequence units (bases / residues); None = the encoder's own limit.
    max_length: int | None = None
    # Which part of a too-long input is kept: RNA keeps its 3' end, protein its N-terminus,
    # DNA stays centred on the TSS. None = the modality's default (set by the model builder).
    crop: CropRule | None = None
    # Recompute activations in the backward pass instead of storing them: less memory for a second
    # forward pass through the encoder. Only in training with gradients on; results are unchanged.
    gradient_checkpointing: bool = False
    # Enformer / Borzoi: BatchNorm layers keep their loaded running statistics and affine weights
    # (eval mode, no gradients) while the rest trains, so training normalises as evaluation does.
    freeze_batchnorm: bool = False


@dataclass
class EncoderOutput:
    hidden: torch.Tensor  # [B, L, D] float
    mask: torch.Tensor  # [B, L] bool, True on tokens that carry sequence
    # Only when asked (`SequenceEncoder.forward_with_attentions`): one entry per layer run, each
    # layer's self-attention weights [B, H, L, L] (rows: queries, columns: keys; every token of
    # `tokenize`'s output, special tokens and padding included), or what `reduce` made of them.
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CropCounts:
    """Sequences tokenized and cropped, and the units (bases, residues) the crops removed."""

    unit: str = "units"
    seen: int = 0
    cropped: int = 0
    removed: int = 0

    def __add__(self, other: CropCounts) -> CropCounts:
        return CropCounts(self.unit, self.seen + other.seen, self.cropped + other.cropped,
                          self.removed + other.removed)

    def __sub__(self, other: CropCounts) -> CropCounts:
        return CropCounts(self.unit, self.seen - other.seen, self.cropped - other.cropped,
                          self.removed - other.removed)

    def record(self, originals: Sequence[Sized], kept: Sequence[Sized]) -> None:
        self.seen += len(originals)
        self.cropped += sum(len(k) < len(s) for k, s in zip(kept, originals, strict=True))
        self.removed += sum(map(len, originals)) - sum(map(len, kept))


def crop_difference(after: dict[str, CropCounts], before: dict[str, CropCounts]
                    ) -> dict[str, CropCounts]:
    """Per entry, what was counted between two `crop_counts()` snapshots (absent before: all)."""
    return {name: after[name] - before.get(name, CropCounts(after[name].unit)) for name in after}


def log_crops(counts: dict[str, CropCounts], context: str) -> None:
    """One line per entry that cropped anything, e.g. "epoch 3: rna cropped 3 of 120 sequences
    (1500 bases removed)"."""
    for name, count in counts.items():
        if count.cropped:
            logger.info("%s: %s cropped %d of %d sequences (%d %s removed)", context, name,
                        count.cropped, count.seen, count.removed, count.unit)


# The base of BatchNorm1d/2d/3d and SyncBatchNorm (the one torch class that all of them share).
BatchNorm = nn.modules.batchnorm._BatchNorm


def batchnorms(root: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer at or below `root` (Enformer's and Borzoi's convolution blocks)."""
    return [module for module in root.modules() if isinstance(module, BatchNorm)]


def keep_frozen_in_eval(root: nn.Module) -> None:
    """Put every module below `root` whose parameters are all frozen in eval mode.

    A frozen part must stay as loaded while the rest of the model trains: its BatchNorm
    statistics (Enformer, Borzoi) must not update and its dropout must not fire.
    """
    for name, module in root.named_modules():
        if not name:
            continue  # the root itself: its `train` override is what calls us
        parameters = list(module.parameters())
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            module.eval()


class SequenceEncoder(nn.Module, ABC):
    """Base class: subclasses set `output_dim`, `max_length`, `crop_rule` and `unit`, and
    implement `tokenize` and `forward`.

    Every encoder counts its crops in `crops` (sequences tokenized, cropped, units removed); the
    model's users log them once per epoch or per prediction run, never per batch. Frozen parts,
    and every BatchNorm under `freeze_batchnorm`, stay in eval mode whatever `train()` is asked
    (the one place of that rule).

    Attribution (gradient x input) reaches the input representation through
    `input_representations` and maps its rows back to sequence positions with `token_spans`;
    subclasses pass that representation through `capture_input` and build their graph when
    `records_graph` says so.
    """

    config: EncoderConfig
    output_dim: int  # D of `EncoderOutput.hidden`
    max_length: int  # longest input in sequence units before cropping
    crop_rule: CropRule
    unit: str  # what `max_length` counts ("bases", "residues", "bp"): a class attribute
    # Whether `forward_with_attentions` can return self-attention maps (transformer encoders).
    exposes_attention: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.crops = CropCounts(self.unit)
        # The list `input_representations` fills while an attribution asks; None otherwise.
        self._captured_inputs: list[torch.Tensor] | None = None

    @abstractmethod
    def tokenize(self, sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        """Raw sequences -> padded model inputs (dict of [B, ...] tensors), cropped by the rule."""

    @abstractmethod
    def forward(self, inputs: dict[str, torch.Tensor]) -> EncoderOutput:
        """Model inputs from `tokenize` -> hidden states [B, L, D] and mask [B, L]."""

    def forward_with_attentions(
        self,
        inputs: dict[str, torch.Tensor],
        reduce: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> EncoderOutput:
        """`forward`, plus each layer's self-attention weights in `EncoderOutput.attentions`.

        For analysis only: the normal path never computes the weights (fused attention kernels
        do not store them). `reduce(layer_index, weights [B, H, L, L])`, when given, replaces each
        layer's weights by what it returns as soon as they exist, so a long input need not hold
        every layer's [L, L] maps at once. Encoders without self-attention maps refuse.
        """
        raise IsoformerError(
            f"{self.config.kind}: this encoder does not expose self-attention maps (transformer "
            "encoders do: nucleotide_transformer, esm2)"
        )

    def token_spans(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """Where each token of `tokenize(sequences)` lies in its sequence as given (uncropped).

        Per sequence an int64 array [L_i, 2] of 0-based half-open (start, end) positions, one row
        per token in `tokenize`'s order (padding excluded); special tokens (`<cls>`, `<eos>`) are
        the empty span (0, 0). Nothing is counted in `crops`.
        """
        raise IsoformerError(f"{self.config.kind}: this encoder does not map its tokens to "
                             "sequence positions")

    @contextlib.contextmanager
    def input_representations(self) -> Iterator[list[torch.Tensor]]:
        """For attribution: within the block every forward pass builds its autograd graph from
        the input representation, frozen parameters or not, and appends that representation to
        the yielded list, a leaf tensor requiring grad.

        One-hot encoders give the windows [B, L, 4] (A, C, G, T), token encoders the token
        embeddings [B, L, D] (the embedding layer's output); row l is the token `token_spans`
        places at row l.
        """
        captured: list[torch.Tensor] = []
        self._captured_inputs = captured
        try:
            yield captured
        finally:
            self._captured_inputs = None

    def records_graph(self, trainable: bool) -> bool:
        """Whether this forward pass builds an autograd graph: gradients are enabled, and some
        parameter on its path trains (`trainable`) or `input_representations` is capturing."""
        return torch.is_grad_enabled() and (trainable or self._captured_inputs is not None)

    def capture_input(self, representation: torch.Tensor) -> torch.Tensor:
        """The input representation [B, L, C] the forward pass continues from: `representation`
        itself, or within `input_representations` a recorded leaf copy of it requiring grad."""
        if self._captured_inputs is None:
            return representation
        leaf = representation.detach().requires_grad_(True)
        self._captured_inputs.append(leaf)
        return leaf

    def train(self, mode: bool = True) -> SequenceEncoder:
        super().train(mode)
        keep_frozen_in_eval(self)
        if self.config.freeze_batchnorm:  # BatchNorm without affine weights included
            for module in batchnorms(self):
                module.eval()
        return self

    @property
    def checkpointing(self) -> bool:
        """Whether this forward pass checkpoints activations (`gradient_checkpointing` asked, in
        training, with gradients enabled: evaluation and inference never pay its recomputation)."""
        return self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()

    def crop_batch(self, sequences: Sequence[str]) -> list[str]:
        """Each sequence cropped to `max_length` units by `crop_rule`, and counted in `crops`."""
        kept = [crop_sequence(sequence, self.max_length, self.crop_rule) for sequence in sequences]
        self.crops.record(sequences, kept)
        return kept


CroppedT = TypeVar("CroppedT", str, list[int])


def crop_sequence(sequence: CroppedT, max_length: int, rule: CropRule) -> CroppedT:
    """Keep `max_length` units of `sequence` (a string, or token ids): its start, end or centre."""
    if len(sequence) <= max_length:
        return sequence
    if rule == "start":
        return sequence[:max_length]
    if rule == "end":
        return sequence[-max_length:]
    # Centre: the unit at len // 2 (a DNA window's TSS) lands at max_length // 2, the TSS index of
    # a window of max_length, so cropping a long window gives exactly the shorter window.
    left = len(sequence) // 2 - max_length // 2
    return sequence[left : left + max_length]
