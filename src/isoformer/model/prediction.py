"""The one way an IsoFormer makes predictions: in validation, `evaluate`, `predict` and the API.

- `predict_batch(model, records)`: records -> tokenize -> the model's device -> forward: [B, T] in
  the model's training space (standardised when configured). Lightning's training and validation
  steps call it on their batches; `predict_records` calls it on its own.
- `prediction_loader(records, lengths, batch_size)`: the DataLoader both validation and
  `predict_records` iterate: index batches longest first (so padding stays small and memory
  trouble shows on the first batch), each batch a list of records.
- `predict_records(model, records, ...)`: that loader through `predict_batch` under
  `torch.inference_mode`, with bfloat16 autocast when asked; log(1 + TPM) [N, T] back in input
  order, crops logged once per call.

Records are dicts with `dna_sequence`, `rna_sequence` and optionally `protein_sequence`, as in
`IsoFormer.tokenize`; a `TranscriptDataset` serves such items.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from rich.progress import track
from torch.utils.data import DataLoader

from isoformer.constants import INFERENCE_PRECISIONS, SEQUENCE_KEYS
from isoformer.encoders.base import crop_difference, log_crops
from isoformer.errors import IsoformerError
from isoformer.model.kmer_baseline import KmerBaseline

if TYPE_CHECKING:
    from isoformer.model.isoformer import IsoFormer

# One of INFERENCE_PRECISIONS; the head stays float32 under "bf16" (see `IsoFormer.forward`).
InferencePrecision = Literal["32", "bf16"]
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"

Record = dict[str, Any]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` (the GPU when there is one), `cpu`, `cuda` or `cuda:N` -> a usable torch.device."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise IsoformerError(f"device {device!r}: choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise IsoformerError(
            f"device {device!r}: no CUDA device is available here; use --device cpu or auto"
        )
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise IsoformerError(
            f"device {device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
        )
    return torch.device(device)


def inference_autocast(
    device: torch.device, precision: InferencePrecision
) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` for "bf16", nothing for "32"."""
    if precision not in INFERENCE_PRECISIONS:
        raise IsoformerError(
            f"precision {precision!r}: choose one of {', '.join(INFERENCE_PRECISIONS)}"
        )
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def record_length(record: Record) -> int:
    """What sets a record's padded size: its RNA plus protein length (DNA windows are equal)."""
    return sum(len(record.get(SEQUENCE_KEYS[m]) or "") for m in ("rna", "protein"))


def prediction_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of `batch_size`, longest records first; every index once."""
    if batch_size < 1:
        raise IsoformerError(f"batch_size must be at least 1 (got {batch_size})")
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate_records(items: list[Record]) -> list[Record]:
    """Keep a batch as a list of records; the model tokenises (and pads) it."""
    return items


def prediction_loader(
    records: Sequence[Record] | torch.utils.data.Dataset,
    lengths: Sequence[int],
    batch_size: int,
    num_workers: int = 0,
    persistent_workers: bool = False,
) -> DataLoader:
    """Batches of records in `prediction_batches` order (workers read dataset items, e.g. DNA
    windows from the FASTA, while the model runs)."""
    return DataLoader(
        records,  # type: ignore[arg-type]
        batch_sampler=prediction_batches(lengths, batch_size),
        collate_fn=collate_records,
        num_workers=num_workers,
        persistent_workers=persistent_workers and num_workers > 0,
    )


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    return {key: _move(item, device) for key, item in value.items()}


def predict_batch(model: IsoFormer, records: Sequence[Record]) -> torch.Tensor:
    """Model output [B, T] in its training space, in the head's dtype (float32 or float64)."""
    batch = _move(model.tokenize(records), model.device)
    return model(batch).predictions


def predict_records(
    model: IsoFormer | KmerBaseline,
    records: Sequence[Record] | torch.utils.data.Dataset,
    batch_size: int = 32,
    lengths: Sequence[int] | None = None,
    precision: InferencePrecision = "32",
    num_workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """log(1 + TPM) predictions [N, T] (float32) for `records`, in their order.

    `lengths` orders the batches (default: `record_length` of each record; a dataset passes its
    own so that no item is read twice). The model runs in eval mode on its device, restored after.
    A k-mer baseline (`KmerBaseline`) has no batches, device or precision: it reads every record
    and predicts in float64 on the CPU.
    """
    if isinstance(model, KmerBaseline):
        return model.predict([records[i] for i in range(len(records))])  # type: ignore[index]
    if lengths is None:
        lengths = [record_length(records[i]) for i in range(len(records))]  # type: ignore[arg-type]
    loader = prediction_loader(records, lengths, batch_size, num_workers)
    results = np.empty((len(lengths), len(model.tissues)), dtype=np.float32)
    crops_before = model.crop_counts()
    batches: Iterator = zip(loader.batch_sampler, loader)
    if progress:
        batches = track(batches, description="predicting", total=len(loader), transient=True)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), inference_autocast(model.device, precision):
            for indices, batch in batches:
                predictions = model.to_log1p(predict_batch(model, batch))
                results[indices] = predictions.float().cpu().numpy()
    finally:
        model.train(was_training)
    log_crops(crop_difference(model.crop_counts(), crops_before),
              f"predicting {len(lengths)} records")
    return results
