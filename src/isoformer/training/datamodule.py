"""Train / valid / test loaders over a built dataset.

Batches stay lists of item dicts (sequences as strings, targets as arrays): tokenisation happens in
the LightningModule through `IsoFormer.tokenize`, which pads each batch only to its longest member.
Training batches can be bucketed by RNA length so that padding, the main waste, stays small, and
their DNA windows can move by a few random bases (`RandomDnaShift`); validation and test batches
are those of every prediction (`prediction_loader`: longest first, windows centred on the TSS).
With an embedding cache, items also carry their frozen encoders' states (`CachedDataset`).
In a distributed run each process loads its own shard of both (`LengthBucketBatchSampler`,
`shard_batches`), with rank and world size from `distributed_context`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

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


def distributed_context(trainer: L.Trainer | None = None) -> tuple[int, int]:
    """(global rank, world size) of this process: torch.distributed's once a process group is
    initialised, else the trainer's, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if trainer is not None:
        return trainer.global_rank, trainer.world_size
    return 0, 1


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length, sharded over `num_replicas` processes (DDP ranks).

    Each epoch: shuffle all indices, cut them into pools of `pool_batches` global batches (a
    global batch: `batch_size * num_replicas` indices), sort each pool by length, cut it into
    global batches, then shuffle their order. Rank r takes the r-th slice of `batch_size` of
    every global batch, so step k of a run on N ranks trains on the same indices as step k of one
    process with batch_size x N (`epoch_batches`), and for a seed every rank agrees on the order.

    Every rank yields the same number of batches, all of `batch_size` except in the one global
    batch left short at the end of the epoch: that one is padded by repetition (its first indices
    again, at most num_replicas - 1 of them) to a multiple of num_replicas, and split evenly. So
    each step's per-rank batches are of equal size (DDP's mean of the ranks' mean gradients is the
    mean over the step's batch) and every transcript is trained on every epoch; dropping the
    remainder instead would lose up to a global batch per epoch, a visible share of a small
    dataset, and would change the one-process epoch, which this leaves exactly as it was.
    Written here because neither torch nor Lightning ships a length-bucketing batch sampler.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50,
                 num_replicas: int = 1, rank: int = 0):
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise IsoformerError(
                f"length buckets: batch_size {batch_size}, rank {rank} of {num_replicas} replicas"
            )
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.num_replicas, self.rank = num_replicas, rank
        self.global_batch_size = batch_size * num_replicas
        self.pool_size = self.global_batch_size * pool_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank."""
        return -(-len(self.lengths) // self.global_batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def epoch_batches(self) -> list[list[int]]:
        """This epoch's global batches, in order (the same on every rank)."""
        # A seed- and epoch-determined order: reproducible, also after resuming mid-run.
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        indices = list(range(len(self.lengths)))
        rng.shuffle(indices)
        size = self.global_batch_size
        batches = []
        for start in range(0, len(indices), self.pool_size):
            pool = sorted(indices[start : start + self.pool_size], key=self.lengths.__getitem__)
            batches += [pool[i : i + size] for i in range(0, len(pool), size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.epoch_batches():
            per_rank = -(-len(batch) // self.num_replicas)  # batch_size, except in a short batch
            padded = [batch[i % len(batch)] for i in range(per_rank * self.num_replicas)]
            yield padded[self.rank * per_rank : (self.rank + 1) * per_rank]


# Set (True) on a validation record that only evens out the ranks' batch counts: it is predicted
# like the others (sharded models need every rank in every forward) but not scored.
PADDING_KEY = "isoformer_padding"


class PaddedDataset(torch.utils.data.Dataset):
    """`dataset` whose indices len(dataset) + i serve item i again, marked with PADDING_KEY."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset
        self.size = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < self.size:
            return self.dataset[index]
        return {**self.dataset[index - self.size], PADDING_KEY: True}


def shard_batches(batches: Sequence[list[int]], size: int, rank: int,
                  num_replicas: int) -> list[list[int]]:
    """Rank `rank`'s share of `batches` over a dataset of `size` items: every num_replicas-th
    batch (so the longest batches spread over the ranks), then, where this rank has one fewer
    than the first ranks, one padding batch (the last batch's last item, as index size + i for
    `PaddedDataset`), so that every rank runs the same number of batches. Each index is scored on
    exactly one rank."""
    mine = [list(batch) for batch in batches[rank::num_replicas]]
    per_rank = -(-len(batches) // num_replicas)
    if len(mine) < per_rank:
        mine.append([size + batches[-1][-1]])
    return mine


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
        cache: EmbeddingCache | None = None,
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
        # Each process of a distributed run loads its own shard (the Trainer leaves these loaders
        # alone: use_distributed_sampler=False).
        rank, world = distributed_context(self.trainer)
        if not self.bucket_by_length:
            if world == 1:
                return DataLoader(self.split("train"), batch_size=self.batch_size, shuffle=True,
                                  **options)
            shard = DistributedSampler(self.split("train"), num_replicas=world, rank=rank,
                                       shuffle=True, seed=self.seed)
            return DataLoader(self.split("train"), batch_size=self.batch_size, sampler=shard,
                              **options)
        lengths = [len(rna) for rna in self.split("train").rna]
        sampler = LengthBucketBatchSampler(lengths, self.batch_size, seed=self.seed,
                                           num_replicas=world, rank=rank)
        return DataLoader(self.split("train"), batch_sampler=sampler, **options)

    def _prediction_loader(self, name: str) -> DataLoader:
        dataset = self.split(name)
        rank, world = distributed_context(self.trainer)
        if world == 1:
            return prediction_loader(dataset, dataset.sequence_lengths(), self.batch_size,
                                     self.num_workers, persistent_workers=True)
        # A distributed run: the one-process batches dealt to the ranks (`shard_batches`).
        batches = shard_batches(prediction_batches(dataset.sequence_lengths(), self.batch_size),
                                len(dataset), rank, world)
        return DataLoader(PaddedDataset(dataset), batch_sampler=batches,
                          collate_fn=collate_records, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._prediction_loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._prediction_loader("test")
