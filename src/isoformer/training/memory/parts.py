"""The model's parts run at short inputs: the token encoders (NT-v2, ESM-2) as they are, the DNA
window encoders (Enformer, Borzoi) rebuilt at short windows, the fusion at the config's token
counts."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from isoformer.encoders.base import EncoderConfig, EncoderOutput, SequenceEncoder
from isoformer.training.memory.curves import Curve, add_point
from isoformer.training.memory.measure import StepMeasurement, bytes_scale, measure_step

# Token encoders: sequence units per token and special tokens (NT-v2: <cls>; ESM-2: <cls>, <eos>).
TOKEN_KINDS = {"nucleotide_transformer": (6, 1), "esm2": (1, 2)}
_LETTERS = {"dna": "ACGT", "rna": "ACGT", "protein": "ACDEFGHIKLMNPQRSTVWY"}
# Short inputs the token encoders run at (tokens); longer configs are extrapolated.
SHORT_TOKENS = (32, 64, 96, 128)
# DNA window encoders run at 1..4 times a short window of at least this many bins (and output
# bins): enough for BatchNorm at batch 1 and for the central crop.
MIN_SHORT_BINS = 8
# The architecture field holding a DNA window encoder's output bins (its central crop).
_WINDOW_CROP_FIELD = {"enformer": "target_length", "borzoi": "bins_to_return"}


def _random_sequence(rng: random.Random, modality: str, length: int) -> str:
    letters = _LETTERS[modality]
    return "".join(rng.choice(letters) for _ in range(length))


def _encoder_step(encoder: SequenceEncoder, sequences: list[str], precision: str,
                  dtypes: list[torch.dtype]) -> StepMeasurement:
    """A training step of `encoder` alone on `sequences`; its output is counted with the fusion,
    which reads it. The output's dtype is appended to `dtypes`."""
    inputs = encoder.tokenize(sequences)

    def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = encoder(inputs).hidden
        dtypes.append(hidden.dtype)
        return hidden.float().sum(), []

    memory = measure_step(forward, exclude=encoder, precision=precision)
    scale = bytes_scale(precision)
    return StepMeasurement(scale * memory.saved, 0, scale * memory.peak, memory.flops)


def measure_encoder(encoder_at: Callable[[int], SequenceEncoder], modality: str,
                    lengths: list[int], units: Callable[[int], int], precision: str,
                    rng: random.Random) -> tuple[Curve, torch.dtype]:
    """The encoder at each length: `encoder_at(length)` gives the encoder to run and
    `units(length)` the letters of an input of that length."""
    curve = Curve()
    dtypes: list[torch.dtype] = []
    for length in lengths:
        encoder = encoder_at(length)
        sequence = _random_sequence(rng, modality, units(length))
        add_point(curve, length, lambda batch, e=encoder, s=sequence: _encoder_step(
            e, [s] * batch, precision, dtypes))
        del encoder  # a DNA encoder rebuilt for this window is freed before the next one
    return curve, dtypes[-1]


@dataclass
class WindowEncoder:
    """What the short-window runs need of a full-window DNA encoder (Enformer, Borzoi), kept
    once the full model is freed."""

    config: EncoderConfig
    max_length: int  # the window, bp
    output_bins: int  # after the encoder's central crop
    output_bin: int  # bp per output bin
    window_multiple: int  # bp a window must be a multiple of

    @classmethod
    def of(cls, encoder: SequenceEncoder) -> WindowEncoder:
        if encoder.config.kind == "enformer":
            output_bin = window_multiple = encoder.bin_size  # type: ignore[attr-defined]
        else:
            from isoformer.encoders.borzoi import BORZOI_BIN, BORZOI_TRANSFORMER_BIN

            output_bin, window_multiple = BORZOI_BIN, BORZOI_TRANSFORMER_BIN
        return cls(encoder.config, encoder.max_length, encoder.output_bins,  # type: ignore
                   output_bin, window_multiple)

    @property
    def crop_ratio(self) -> Fraction:
        """Output bins over input bins (896 / 1,536 for the official Enformer), approximated."""
        return Fraction(self.output_bins, self.max_length // self.output_bin).limit_denominator(48)

    def short_windows(self) -> list[int]:
        """1..4 times the shortest window (bp) that crops the same share of its bins to a whole,
        even-sided number of at least MIN_SHORT_BINS; the full window if it is not longer."""
        ratio = self.crop_ratio
        bins = ratio.denominator
        while not (bins >= MIN_SHORT_BINS and bins * ratio >= MIN_SHORT_BINS
                   and (bins - bins * ratio) % 2 == 0
                   and (bins * self.output_bin) % self.window_multiple == 0):
            bins += ratio.denominator
        windows = [k * bins * self.output_bin for k in range(1, 5)]
        return windows if windows[-1] < self.max_length else [self.max_length]

    def config_at(self, window: int) -> EncoderConfig:
        """The encoder's config at a short `window`, cropping the same share of its bins."""
        if window == self.max_length:
            return self.config
        output_bins = int(window // self.output_bin * self.crop_ratio)
        architecture = {**self.config.architecture,
                        _WINDOW_CROP_FIELD[self.config.kind]: output_bins}
        return dataclasses.replace(self.config, max_length=window, architecture=architecture)


def measure_fusion(aggregator: nn.Module, head: nn.Module, inputs: dict[str, tuple[int, int]],
                   dtypes: dict[str, torch.dtype], trainable: dict[str, bool],
                   precision: str) -> Curve:
    """Aggregation, head and loss at the config's token counts (`inputs`: modality -> (tokens,
    width)), every token valid; the encoders' outputs (the inputs here) are counted."""
    from isoformer.training.module import masked_mse

    modules = nn.ModuleList([aggregator, head])
    scale = bytes_scale(precision)

    def run(batch: int) -> StepMeasurement:
        embeddings = {
            m: EncoderOutput(
                hidden=torch.randn(batch, length, width, dtype=dtypes[m]).requires_grad_(
                    trainable[m]),
                mask=torch.ones(batch, length, dtype=torch.bool),
            )
            for m, (length, width) in inputs.items()
        }
        present = {m: torch.ones(batch, dtype=torch.bool) for m in inputs}
        outputs = [e.hidden for e in embeddings.values()]

        def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
            # As IsoFormer.forward after the encoders: the head runs outside autocast.
            aggregated = aggregator(embeddings, present)
            with torch.autocast(device_type="cpu", enabled=False):
                predictions = head(aggregated.fused)
            return masked_mse(predictions, torch.zeros_like(predictions)), outputs

        memory = measure_step(forward, exclude=modules, precision=precision)
        # The inputs were made before the step: held throughout, on top of its peak.
        inputs_bytes = sum(t.untyped_storage().nbytes() for t in outputs)
        return StepMeasurement(scale * memory.saved, scale * memory.outputs,
                               scale * (memory.peak + inputs_bytes), memory.flops)

    curve = Curve()
    add_point(curve, sum(n for n, _ in inputs.values()), run)
    return curve


def longest_tokens(encoder: SequenceEncoder, modality: str, units: int,
                   rng: random.Random) -> int:
    """Tokens of the longest input the encoder takes (`units` letters without N)."""
    sequence = _random_sequence(rng, modality, units)
    return int(encoder.tokenize([sequence])["input_ids"].shape[1])

