"""Activation checkpointing for the encoder stages that the wrappers run themselves (Enformer,
Borzoi); ESM-2 and NT-v2 use transformers' own per-layer checkpointing (`esm_backbone`).

A checkpointed stage keeps only its input: its inner activations are recomputed in the backward
pass, through `torch.utils.checkpoint` (non-reentrant, RNG state preserved, so dropout draws the
same masks). The recomputation would update a training BatchNorm's running statistics a second
time; they are restored, so checkpointing changes memory and time only, never the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import ContextManager

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from isoformer.encoders.base import batchnorms


def run_stages(stages: Iterable[nn.Module], x: torch.Tensor, checkpointed: bool) -> torch.Tensor:
    """`x` through each stage in turn, each one checkpointed when `checkpointed` is True."""
    for stage in stages:
        if checkpointed:
            x = checkpoint(stage, x, use_reentrant=False,
                           context_fn=partial(_recompute_keeps_statistics, stage))
        else:
            x = stage(x)
    return x


def _recompute_keeps_statistics(stage: nn.Module) -> tuple[ContextManager, ContextManager]:
    return nullcontext(), _batchnorm_statistics_restored(stage)


@contextmanager
def _batchnorm_statistics_restored(stage: nn.Module) -> Iterator[None]:
    """Undo whatever the body does to the running statistics of `stage`'s training BatchNorms."""
    buffers = [buffer for module in batchnorms(stage) if module.training
               for buffer in module.buffers()]
    saved = [buffer.clone() for buffer in buffers]
    try:
        yield
    finally:  # also when torch stops the recomputation early
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
