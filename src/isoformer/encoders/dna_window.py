"""What Enformer and Borzoi share: fixed-length, TSS-centred DNA windows in, one-hot tokens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from isoformer.encoders.base import SequenceEncoder, crop_sequence
from isoformer.encoders.tokenizers import one_hot_encode
from isoformer.errors import IsoformerError


class DnaWindowEncoder(SequenceEncoder):
    """Base of the one-hot DNA encoders: every window is exactly `max_length` bp.

    Longer sequences are cropped by `crop_rule` (default "center": the TSS stays central) and
    counted; shorter ones are an error, since the models' bins and crops assume one window length
    (the data pipeline N-pads windows at chromosome ends).
    """

    kind: str
    unit = "bp"

    def tokenize(self, sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        """Crop each window to `max_length`, then one-hot -> {"one_hot": FloatTensor [B, L, 4]}.

        Bases other than A, C, G, T (IUPAC codes) read as N, i.e. all zeros.
        """
        for index, sequence in enumerate(sequences):
            if len(sequence) < self.max_length:
                raise IsoformerError(
                    f"{self.kind}: DNA sequence {index} has {len(sequence)} bp, shorter than the "
                    f"{self.max_length}-bp window (extract windows of that length, N-padded at "
                    "chromosome ends, or set the encoder's max_length)"
                )
        one_hot, _ = one_hot_encode(self.crop_batch(sequences), unknown="n")
        return {"one_hot": one_hot}

    def token_spans(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """One base per token: the positions the crop keeps, as (start, end) rows [L, 2] (see
        the base)."""
        spans = []
        for sequence in sequences:
            kept = np.array(crop_sequence(list(range(len(sequence))), self.max_length,
                                          self.crop_rule), dtype=np.int64)
            spans.append(np.stack([kept, kept + 1], axis=1))
        return spans

    def channels_first(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`inputs["one_hot"]` [B, max_length, 4] -> [B, 4, max_length] in the weights' dtype,
        the one-hot being the input representation of an attribution (`capture_input`).

        The cast lets the float32 one-hot meet bfloat16 / float64 convolutions (`bf16-true`,
        `64-true`); under autocast the convolutions cast it themselves.
        """
        one_hot = inputs["one_hot"]
        if one_hot.ndim != 3 or one_hot.shape[1:] != (self.max_length, 4):
            raise IsoformerError(
                f"{self.kind}: expected one-hot DNA windows [B, {self.max_length}, 4], got "
                f"{list(one_hot.shape)} (tokenize crops longer windows to max_length)"
            )
        dtype = next(self.parameters()).dtype
        return self.capture_input(one_hot).transpose(1, 2).to(dtype)
