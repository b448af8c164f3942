"""Training throughput on the embedded default: length bucketing and the embedding cache against
a naive loop, measured in one run.

The model is the `tiny` preset with every encoder frozen (what the cache serves); each step is a
forward pass, the masked MSE, the backward pass and an AdamW step of what trains (fusion, head),
data loading included. Three paths over the same training split:
  naive      shuffled batches, each padded to the split's longest RNA and protein, encoders
             run every step
  bucketing  the training loader's length-bucketed batches, padded to their own longest
             member, encoders run every step
  cache      the same bucketed batches read from an `isoformer embed` cache: no encoder runs
             (the cache is built once beforehand; its time is reported, not counted per step)
Usage:
    python benchmarks/train_step.py [--quick] [--genes 600] [--steps 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from isoformer.analysis.demo import simulate_demo_dataset
from isoformer.constants import TARGETS
from isoformer.encoders.embedding_cache import EmbeddingCache
from isoformer.training.datamodule import TranscriptDataModule
from isoformer.training.embed import embed
from isoformer.training.fit import resolve_config, seeded_model
from isoformer.training.module import masked_mse

FROZEN = [f"model.encoders.{m}.train_mode=frozen" for m in ("dna", "rna", "protein")]
FROZEN += ["training.dna_shift=0"]


def pad_to(inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """Token inputs padded on the right to `length` tokens (pad id 1 as NT-v2 and ESM-2 use,
    mask False), as a loop without bucketing that pads to the global maximum would."""
    extra = length - inputs["input_ids"].shape[1]
    return {"input_ids": F.pad(inputs["input_ids"], (0, extra), value=1),
            "attention_mask": F.pad(inputs["attention_mask"], (0, extra), value=False)}


def global_padding(model: Any, dataset: Any) -> Callable[[dict], dict]:
    """A batch transform padding RNA and protein tokens to the split's longest."""
    longest = {}
    for modality, sequences in (("rna", dataset.rna), ("protein", dataset.protein)):
        sequence = max(sequences, key=len)
        longest[modality] = model.encoders[modality].tokenize([sequence])["input_ids"].shape[1]

    def transform(batch: dict) -> dict:
        for modality, length in longest.items():
            batch["inputs"][modality] = pad_to(batch["inputs"][modality], length)
        return batch

    return transform


def samples_per_second(model: Any, batches: Iterable[list[dict]], steps: int,
                       transform: Callable[[dict], dict] | None = None) -> float:
    """Training steps over `batches` (2 warm-up steps first): samples per second."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    iterator = iter(batches)
    samples, start = 0, 0.0
    for step in range(steps + 2):
        if step == 2:
            samples, start = 0, time.perf_counter()
        records = next(iterator)
        batch = model.tokenize(records)
        if transform is not None:
            batch = transform(batch)
        predictions = model(batch).predictions
        targets = torch.from_numpy(np.stack([r[TARGETS] for r in records]))
        loss = masked_mse(predictions, model.from_log1p(targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        samples += len(records)
    return samples / (time.perf_counter() - start)


def endless(loader: Any) -> Iterable[list[dict]]:
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 genes, 8 steps per path")
    parser.add_argument("--genes", type=int, default=600)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    genes, steps = (120, 8) if args.quick else (args.genes, args.steps)
    torch.set_num_threads(torch.get_num_threads())

    with tempfile.TemporaryDirectory() as folder:
        _, data = simulate_demo_dataset(folder, n_genes=genes)
        config = resolve_config(data, "tiny", FROZEN)
        started = time.perf_counter()
        summary = embed(data, "tiny", Path(folder) / "cache", overrides=FROZEN, progress=False)
        embed_seconds = time.perf_counter() - started
        batch_size = config.training.batch_size
        rates = {}
        for path in ("naive", "bucketing", "cache"):
            model = seeded_model(config)
            cache = EmbeddingCache.open(summary.directory) if path == "cache" else None
            module = TranscriptDataModule(data, batch_size=batch_size,
                                          dna_length=config.model.dna_length,
                                          bucket_by_length=path != "naive", cache=cache)
            loader = module.train_dataloader()
            transform = global_padding(model, module.split("train")) if path == "naive" else None
            rates[path] = samples_per_second(model, endless(loader), steps, transform)
            print(f"{path:>10}: {rates[path]:8.1f} samples/s")
    print(f"{len(module.split('train'))} training transcripts, batch {batch_size}, {steps} steps "
          f"per path; cache built once in {embed_seconds:.1f} s "
          f"({summary.size_bytes / 1e6:.1f} MB, entries {summary.entries})")
    bucketing, cached = rates["bucketing"] / rates["naive"], rates["cache"] / rates["naive"]
    print(f"train_step: {rates['cache']:.0f} samples/s (bucketing {bucketing:.1f}x, "
          f"cache {cached:.1f}x vs naive)")


if __name__ == "__main__":
    main()
