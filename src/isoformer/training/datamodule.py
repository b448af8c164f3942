"""Train / valid / test loaders over a built dataset.

Batches stay lists of item dicts (sequences as strings, targets as arrays): tokenisation happens in
the LightningModule through `IsoFormer.tokenize`, which pads each batch only to its longest member.
Training batches can be bucketed by RNA length so that padding, the main waste, stays small, and
their DNA windows can move by a few random bases (`RandomDnaShift`); validation and test batches
are those of every prediction (`prediction_loader`: longest first, windows centred on the TSS).
With an embedding cache, items also carry their frozen encoders' states (`CachedDataset`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from isoformer.constants import DNA_SEQUENCE
from isoformer.data.dataset import TranscriptDataset, open_split
from isoformer.encoders.embedding_cache import EmbeddingCache
from isoformer.errors import IsoformerError
from isoformer.model.prediction import collate_records, prediction_batches, prediction_loader
from isoformer.training.embed import CachedDataset

log = logging.getLogger(__name__)


class RandomDnaShift:
    """Collate that cuts each record's DNA window (read `max_shift` bp wider on each side) at a
    random offset in [-max_shift, max_shift]: the TSS moves by that much from the centre.

    The offsets come from torch's generator, which Lightning seeds in the main process and in
    every worker, so a seed gives the same shifts.
    """

    def __init__(self, dna_length: int, max_shift: int):
        self.dna_length, self.max_shift = dna_length, max_shift

    def __call__(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        starts = torch.randint(0, 2 * self.max_shift + 1, (len(records),)).tolist()
        for record, start in zip(records, starts):
            window = record[DNA_SEQUENCE]
            if len(window) != self.dna_length + 2 * self.max_shift:
                raise IsoformerError(
                    f"{record.get('transcript_id', 'a record')}: DNA window of {len(window)} bp, "
                    f"expected {self.dna_length} + 2 x {self.max_shift} for the shift"
                )
            record[DNA_SEQUENCE] = window[start : start + self.dna_length]
        return collate_records(records)


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length.

    Each epoch: shuffle all indices, cut them into pools of `batch_size * pool_batches`, sort each
    pool by length, cut it into batches, then shuffle the batch order. Written here because neither
    torch nor Lightning ships a length-bucketing batch sampler.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.pool_size = batch_size * pool_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) if self.lengths else 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        # A seed- and epoch-determined order: reproducible, also after resuming mid-run.
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        indices = list(range(len(self.lengths)))
        rng.shuffle(indices)
        batches = []
        for start in range(0, len(indices), self.pool_size):
            pool = sorted(indices[start : start + self.pool_size], key=self.lengths.__getitem__)
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        rng.shuffle(batches)
        yield from batches


class TranscriptDataModule(L.LightningDataModule):
    """Loaders for the dataset's train / valid / test splits at the model's DNA window length."""

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        dna_length: int | None = None,
        num_workers: int = 0,
        bucket_by_length: bool = True,
        seed: int = 0,
        dna_shift: int = 0,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.dna_length = dna_length
        self.num_workers = num_workers
        self.bucket_by_length = bucket_by_length
        self.seed = seed
        self.dna_shift = dna_shift
        self.cache = cache
        if cache is not None and dna_shift and "dna" in cache.modalities:
            raise IsoformerError(
                "training.dna_shift must be 0 with a cache of DNA states (it holds the centred "
                "windows only)"
            )
        self.datasets: dict[str, TranscriptDataset | CachedDataset] = {}

    def split(self, name: str) -> TranscriptDataset | CachedDataset:
        """One split's dataset, loaded once; an empty split is an error (nothing to fit)."""
        if name not in self.datasets:
            length = self.dna_length
            if name == "train" and self.dna_shift:
                length = self._shift().dna_length + 2 * self.dna_shift
            dataset = open_split(self.data_dir, name, dna_length=length)
            log.info("%s split: %d transcripts", name, len(dataset))
            self.datasets[name] = (dataset if self.cache is None
                                   else CachedDataset(dataset, self.cache))
        return self.datasets[name]

    def _shift(self) -> RandomDnaShift:
        if self.dna_length is None:
            raise IsoformerError("a DNA shift needs the model's dna_length")
        return RandomDnaShift(self.dna_length, self.dna_shift)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.split("train")
            self.split("valid")
        if stage in ("test", None):
            self.split("test")

    def train_dataloader(self) -> DataLoader:
        collate = self._shift() if self.dna_shift else collate_records
        options: dict[str, Any] = {
            "collate_fn": collate, "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
        }
        if not self.bucket_by_length:
            return DataLoader(self.split("train"), batch_size=self.batch_size, shuffle=True,
                              **options)
        lengths = [len(rna) for rna in self.split("train").rna]
        sampler = LengthBucketBatchSampler(lengths, self.batch_size, seed=self.seed)
        return DataLoader(self.split("train"), batch_sampler=sampler, **options)

    def _prediction_loader(self, name: str) -> DataLoader:
        dataset = self.split(name)
        return prediction_loader(dataset, dataset.sequence_lengths(), self.batch_size,
                                 self.num_workers, persistent_workers=True)

    def val_dataloader(self) -> DataLoader:
        return self._prediction_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._prediction_loader("test")
        cache: EmbeddingCache | None = None,
