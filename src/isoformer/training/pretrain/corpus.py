"""What a pretraining reads: genome windows or a dataset's sequences, each step's draws seeded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isoformer.constants import MODALITIES
from isoformer.data.dataset import read_metadata, read_transcripts, resolve_fasta
from isoformer.data.genome import Genome, mask_non_acgtn, reverse_complement
from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.mlm import MlmObjective
from isoformer.errors import IsoformerError
from isoformer.training.pretrain.config import PretrainRunConfig, dna_length

WINDOW_TRIES = 100  # draws per DNA window before a genome is declared (almost) all N


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for (seed, key): each step's windows and masks are their own stream."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def seeded_torch_generator(seed: int, *key: int) -> torch.Generator:
    """The torch generator for (seed, key), for the masks `MlmObjective.masked_batch` draws."""
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class GenomeWindows:
    """Random N-free windows of a FASTA, either strand; chromosome tails held out."""

    def __init__(self, fasta: Path, length: int, val_fraction: float):
        self.fasta, self.length = Path(fasta), length
        self.genome = Genome(fasta)
        self.train: list[tuple[str, int, int]] = []
        self.heldout: list[tuple[str, int, int]] = []
        for chrom in self.genome.chroms:
            size = self.genome.chrom_length(chrom)
            tail = max(math.ceil(val_fraction * size), length) if (
                val_fraction > 0 and size >= 2 * length) else 0
            if size - tail >= length:
                self.train.append((chrom, 0, size - tail))
            if tail:
                self.heldout.append((chrom, size - tail, size))
        if not self.train or not self.heldout:
            raise IsoformerError(
                f"{fasta}: no sequence is at least {2 * length} bp long, so no {length}-bp "
                "window can be held out; pass a larger genome or set pretrain.length lower"
            )

    def sample(self, rng: np.random.Generator, n: int, heldout: bool = False) -> list[str]:
        regions = self.heldout if heldout else self.train
        weights = np.array([end - start - self.length + 1 for _, start, end in regions], float)
        weights /= weights.sum()
        windows = []
        for _ in range(n):
            for _ in range(WINDOW_TRIES):
                chrom, start, end = regions[int(rng.choice(len(regions), p=weights))]
                at = int(rng.integers(start, end - self.length + 1))
                window = mask_non_acgtn(self.genome.fetch(chrom, at, at + self.length))[0]
                if "N" not in window:
                    break
            else:
                raise IsoformerError(
                    f"{self.fasta}: no N-free {self.length}-bp window in {WINDOW_TRIES} draws; "
                    "the genome is (almost) all N or set pretrain.length lower"
                )
            windows.append(reverse_complement(window) if rng.random() < 0.5 else window)
        return windows

    def describe(self) -> dict[str, Any]:
        return {"windows": "genome", "length": self.length,
                "train_bases": sum(end - start for _, start, end in self.train),
                "heldout_bases": sum(end - start for _, start, end in self.heldout)}

    def close(self) -> None:
        self.genome.close()


class SequenceCorpus:
    """Distinct non-empty sequences (a dataset's RNAs or proteins); longer ones give random
    windows of `length`."""

    def __init__(self, train: Sequence[str], heldout: Sequence[str], length: int, what: str):
        self.train = sorted({s for s in train if s})
        known = set(self.train)
        self.heldout_pool = sorted({s for s in heldout if s and s not in known})
        self.length = length
        if not self.train or not self.heldout_pool:
            raise IsoformerError(
                f"pretraining needs {what} in the dataset's train and valid splits (found "
                f"{len(self.train)} and {len(self.heldout_pool)} distinct ones)"
            )

    def _crop(self, rng: np.random.Generator, sequence: str) -> str:
        if len(sequence) <= self.length:
            return sequence
        start = int(rng.integers(0, len(sequence) - self.length + 1))
        return sequence[start : start + self.length]

    def sample(self, rng: np.random.Generator, n: int, heldout: bool = False) -> list[str]:
        if heldout:
            order = rng.permutation(len(self.heldout_pool))[:n]
            return [self._crop(rng, self.heldout_pool[i]) for i in order]
        return [self._crop(rng, self.train[int(i)]) for i in rng.integers(0, len(self.train), n)]

    def describe(self) -> dict[str, Any]:
        return {"train_sequences": len(self.train), "heldout_pool": len(self.heldout_pool),
                "length": self.length}

    def close(self) -> None:
        pass


Corpus = GenomeWindows | SequenceCorpus


def open_corpus(modality: str, config: PretrainRunConfig, encoder: EncoderConfig,
                 objective: MlmObjective, fasta: Path | None, data: Path | None) -> Corpus:
    pretrain = config.pretrain
    if modality == "dna":
        length = objective.max_length if encoder.kind == "enformer" else dna_length(config, data)
        if length > objective.max_length:
            raise IsoformerError(
                f"pretrain: {length}-bp DNA windows exceed the {encoder.kind} encoder's "
                f"{objective.max_length} bp; set pretrain.length lower"
            )
        genome = fasta if fasta is not None else resolve_fasta(data, read_metadata(data))
        return GenomeWindows(Path(genome), length, pretrain.val_fraction)
    length = min(pretrain.length or encoder.max_length or objective.max_length,
                 objective.max_length)
    column = "rna" if modality == "rna" else "protein"
    train = read_transcripts(data, "train")[column].to_list()
    heldout = read_transcripts(data, "valid")[column].to_list()
    what = "transcripts" if modality == "rna" else "proteins"
    return SequenceCorpus(train, heldout, length, what)


def check_sources(modality: str, fasta: Path | None, data: Path | None) -> None:
    if modality not in MODALITIES:
        raise IsoformerError(
            f"unknown modality {modality!r}: choose one of {', '.join(MODALITIES)}"
        )
    if fasta is not None and data is not None:
        raise IsoformerError("pass --fasta or --data, not both")
    if modality == "dna":
        if fasta is None and data is None:
            raise IsoformerError(
                "--modality dna reads genome windows: pass --fasta FASTA or --data DATASET"
            )
        if fasta is not None and not Path(fasta).is_file():
            raise IsoformerError(f"genome FASTA {fasta} not found")
        return
    if data is None:
        raise IsoformerError(
            f"--modality {modality} reads the dataset's {modality} sequences: pass --data DATASET"
            + (" (--fasta is for --modality dna)" if fasta is not None else "")
        )


def data_identity(fasta: Path | None, data: Path | None, modality: str) -> dict[str, Any]:
    """The data as pretrain.json records it: the FASTA's path and size, or the dataset's."""
    if data is not None:
        from isoformer.training.run import dataset_fingerprint

        fingerprint = dataset_fingerprint(data)
        identity = {"dataset": fingerprint["path"],
                    "transcripts_sha256": fingerprint["transcripts_sha256"]}
        if modality == "dna":
            genome = resolve_fasta(data, fingerprint["metadata"])
            identity["fasta"] = str(genome.resolve())
            identity["fasta_bytes"] = genome.stat().st_size
        return identity
    assert fasta is not None
    return {"fasta": str(Path(fasta).resolve()), "fasta_bytes": Path(fasta).stat().st_size}
