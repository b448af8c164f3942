"""The one way an IsoFormer makes predictions: in validation, `evaluate`, `predict` and the API.

- `predict_batch(model, records)`: records -> tokenize -> the model's device -> forward: [B, T] in
  the model's training space (standardised when configured). Lightning's training and validation
  steps call it on their batches; `Predictor` calls it on its own.
- `prediction_loader(records, lengths, batch_size)`: the DataLoader both validation and
  `Predictor` iterate: index batches longest first (so padding stays small and memory trouble
  shows on the first batch), each batch a list of records.
- `Predictor(models, precision)`: one model, or replicas of it on several devices
  (`resolve_devices`), running that loader through `predict_batch` under `torch.inference_mode`,
  with bfloat16 autocast when asked; log(1 + TPM) [N, T] back in input order. It counts crops
  over all its calls, so `isoformer predict` logs them once per file, not once per buffer.
- `predict_records(model, records, ...)`: one `Predictor` call, crops logged once.
- `evaluating(*models)`: a block in eval mode, each model back in its own mode after
  (`Predictor`'s calls, attribution's encoder states and gradients).

Records are dicts with `dna_sequence`, `rna_sequence` and optionally `protein_sequence`, as in
`IsoFormer.tokenize`; a `TranscriptDataset` serves such items.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rich.progress
import torch
from torch.utils.data import DataLoader

from isoformer.constants import INFERENCE_PRECISIONS, SEQUENCE_KEYS
from isoformer.encoders.base import CropCounts, crop_difference, log_crops
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


def resolve_devices(devices: str | Sequence[str | torch.device] = "auto") -> list[torch.device]:
    """The devices of model replicas: one device (as `resolve_device`), a comma-separated list
    ("cuda:0,cuda:1"; "cpu,cpu" runs two replicas on the CPU), a list of devices, or a count N of
    CUDA devices (cuda:0 .. cuda:N-1)."""
    if isinstance(devices, torch.device):
        return [devices]
    if isinstance(devices, str) and devices.strip().isdigit():
        count = int(devices)
        if count < 1:
            raise IsoformerError(f"devices {devices!r}: a count of devices must be at least 1")
        return [resolve_device(f"cuda:{index}") for index in range(count)]
    names = devices.split(",") if isinstance(devices, str) else list(devices)
    names = [name.strip() if isinstance(name, str) else name for name in names]
    if not names or "" in names:
        raise IsoformerError(
            f"devices {devices!r}: give a device ({DEVICE_CHOICES}), a comma-separated list of "
            "them (cuda:0,cuda:1) or a count of CUDA devices"
        )
    return [resolve_device(name) for name in names]


def check_precision(precision: str) -> None:
    if precision not in INFERENCE_PRECISIONS:
        raise IsoformerError(
            f"precision {precision!r}: choose one of {', '.join(INFERENCE_PRECISIONS)}"
        )


def inference_autocast(
    device: torch.device, precision: InferencePrecision
) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` for "bf16", nothing for "32"."""
    check_precision(precision)
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


@contextlib.contextmanager
def evaluating(*models: IsoFormer | KmerBaseline) -> Iterator[None]:
    """The models in eval mode (no dropout, fixed BatchNorm statistics), then each in the mode it
    had; a k-mer baseline has no modes."""
    modules = [model for model in models if not isinstance(model, KmerBaseline)]
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


@contextlib.contextmanager
def record_progress(
    enabled: bool, total: int | None = None, description: str = "predicting"
) -> Iterator[Callable[[int], None]]:
    """A rich progress display counting records (`total` None: unknown, the rate is shown
    instead of a percentage); yields `advance(n)`, safe to call from several threads."""
    columns = (
        rich.progress.TextColumn("[progress.description]{task.description}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TaskProgressColumn(show_speed=True),
        rich.progress.TimeElapsedColumn(),
    )
    with rich.progress.Progress(*columns, disable=not enabled, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


class _SharedBatches:
    """An iterator several threads take batches from, one at a time; `close` ends it for all."""

    def __init__(self, batches: Iterable):
        self._batches = iter(batches)
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> _SharedBatches:
        return self

    def __next__(self) -> Any:
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._batches)

    def close(self) -> None:
        self._closed = True


class Predictor:
    """A model, or replicas of one model on several devices, predicting records batch by batch.

    With several replicas each runs in its own thread and takes the next batch when it has
    finished its last (torch releases the GIL in its kernels, so the devices work at once). The
    batches are those of one device, and so are the predictions. A k-mer baseline (`KmerBaseline`)
    has no batches, device or precision: it reads every record and predicts in float64 on the
    CPU. Crops are counted from the predictor's creation (`crops`).
    """

    def __init__(self, models: IsoFormer | KmerBaseline | Sequence[IsoFormer],
                 precision: InferencePrecision = "32"):
        self.models = list(models) if isinstance(models, Sequence) else [models]
        if not self.models:
            raise IsoformerError("a predictor needs at least one model")
        if len(self.models) > 1 and any(isinstance(m, KmerBaseline) for m in self.models):
            raise IsoformerError("a k-mer baseline predicts on the CPU alone: give it one device")
        if len({tuple(m.tissues) for m in self.models}) > 1:
            raise IsoformerError("replicas must predict the same tissues")
        check_precision(precision)
        self.precision = precision
        self._crops_before = [self._crop_counts(m) for m in self.models]

    @staticmethod
    def _crop_counts(model: IsoFormer | KmerBaseline) -> dict[str, CropCounts]:
        return {} if isinstance(model, KmerBaseline) else model.crop_counts()

    def crops(self) -> dict[str, CropCounts]:
        """What the replicas cropped since this predictor was made, summed over them."""
        total: dict[str, CropCounts] = {}
        for model, before in zip(self.models, self._crops_before):
            for name, count in crop_difference(self._crop_counts(model), before).items():
                total[name] = total[name] + count if name in total else count
        return total

    def predict(
        self,
        records: Sequence[Record] | torch.utils.data.Dataset,
        batch_size: int = 32,
        lengths: Sequence[int] | None = None,
        num_workers: int = 0,
        advance: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """log(1 + TPM) predictions [N, T] (float32) for `records`, in their order.

        `lengths` orders the batches (default: `record_length` of each record; a dataset passes
        its own so that no item is read twice). Models run in eval mode, restored after.
        `advance(n)` is called after each batch of n records.
        """
        first = self.models[0]
        items = range(len(records))  # type: ignore[arg-type]
        if isinstance(first, KmerBaseline):
            predictions = first.predict([records[i] for i in items])  # type: ignore[index]
            if advance is not None:
                advance(len(predictions))
            return predictions
        if lengths is None:
            lengths = [record_length(records[i]) for i in items]  # type: ignore[index]
        loader = prediction_loader(records, lengths, batch_size, num_workers)
        results = np.empty((len(lengths), len(first.tissues)), dtype=np.float32)
        batches = _SharedBatches(zip(loader.batch_sampler, loader))
        with evaluating(*self.models):
            if len(self.models) == 1:
                self._run(first, batches, results, advance)
            else:
                with ThreadPoolExecutor(len(self.models), thread_name_prefix="predict") as pool:
                    runs = [pool.submit(self._run, model, batches, results, advance)
                            for model in self.models]
                    try:
                        wait(runs, return_when=FIRST_EXCEPTION)
                    finally:  # after a failure or an interrupt the others stop at their next batch
                        batches.close()
                    for run in runs:
                        run.result()  # re-raises a replica's error
        return results

    def _run(self, model: IsoFormer, batches: _SharedBatches, results: np.ndarray,
             advance: Callable[[int], None] | None) -> None:
        # Inference mode and autocast are per thread: each replica's thread enters them itself.
        with torch.inference_mode(), inference_autocast(model.device, self.precision):
            for indices, batch in batches:
                predictions = model.to_log1p(predict_batch(model, batch))
                results[indices] = predictions.float().cpu().numpy()
                if advance is not None:
                    advance(len(indices))


def predict_records(
    model: IsoFormer | KmerBaseline | Sequence[IsoFormer],
    records: Sequence[Record] | torch.utils.data.Dataset,
    batch_size: int = 32,
    lengths: Sequence[int] | None = None,
    precision: InferencePrecision = "32",
    num_workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """log(1 + TPM) predictions [N, T] (float32) for `records`, in their order, by one model or
    its replicas (see `Predictor`, which also explains `lengths`); crops logged once."""
    predictor = Predictor(model, precision)
    with record_progress(progress, total=len(records)) as advance:  # type: ignore[arg-type]
        results = predictor.predict(records, batch_size, lengths, num_workers, advance)
    log_crops(predictor.crops(), f"predicting {len(results)} records")
    return results
