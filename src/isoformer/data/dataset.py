"""A built dataset on disk (see isoformer.data.schema) and the torch Dataset that serves it.

DNA windows are read from the genome FASTA at item time, so `dna_length` is chosen per use, not
per build. pyfaidx file handles must not cross a fork, so each process opens its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from isoformer.constants import (
    DNA_SEQUENCE,
    GENE_ID,
    PROTEIN_SEQUENCE,
    RNA_SEQUENCE,
    SPLITS,
    TARGETS,
    TRANSCRIPT_ID,
)
from isoformer.data.genome import Genome
from isoformer.data.schema import METADATA_FILE, TRANSCRIPT_COLUMNS, TRANSCRIPTS_FILE
from isoformer.errors import InputFormatError, IsoformerError


def read_metadata(dataset_dir: str | Path) -> dict[str, Any]:
    """`DATASET/metadata.json` as a dict."""
    path = Path(dataset_dir) / METADATA_FILE
    if not path.is_file():
        raise IsoformerError(
            f"{dataset_dir}: not a dataset directory (no {METADATA_FILE}); create one with "
            "`isoformer build`"
        )
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputFormatError(path, f"not valid JSON: {err.msg}", err.lineno) from None
    if not isinstance(metadata, dict):
        raise InputFormatError(path, "expected a JSON object")
    return metadata


def read_transcripts(dataset_dir: str | Path, split: str | None = None) -> pl.DataFrame:
    """`DATASET/transcripts.parquet`, optionally only the rows of one split, in file order."""
    if split is not None and split not in SPLITS:
        raise IsoformerError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    path = Path(dataset_dir) / TRANSCRIPTS_FILE
    if not path.is_file():
        raise IsoformerError(
            f"{dataset_dir}: not a dataset directory (no {TRANSCRIPTS_FILE}); create one "
            "with `isoformer build`"
        )
    try:
        table = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputFormatError(path, f"not a readable parquet file ({err})") from None
    missing = [column for column in TRANSCRIPT_COLUMNS if column not in table.columns]
    if missing:
        raise InputFormatError(path, f"missing columns: {', '.join(missing)}")
    return table if split is None else table.filter(pl.col("split") == split)


def resolve_fasta(
    dataset_dir: str | Path, metadata: dict[str, Any], fasta: str | Path | None = None
) -> Path:
    """The FASTA to read windows from: `fasta` if given, else the one the dataset was built from."""
    if fasta is not None:
        if not Path(fasta).is_file():
            raise IsoformerError(
                f"genome FASTA {fasta} not found; pass --fasta with an existing file"
            )
        return Path(fasta)
    recorded = (metadata.get("fasta") or {}).get("path")
    if not recorded:
        raise IsoformerError(f"{dataset_dir}: {METADATA_FILE} names no genome FASTA; pass --fasta")
    path = Path(dataset_dir) / recorded  # an absolute recorded path stays as it is
    if not path.is_file():
        raise IsoformerError(
            f"genome FASTA {path} (recorded in {Path(dataset_dir) / METADATA_FILE}) "
            "not found; pass --fasta"
        )
    return path


class TranscriptDataset(torch.utils.data.Dataset):
    """Items: transcript_id, gene_id, dna_sequence (TSS window), rna_sequence, protein_sequence,
    targets (float32 [n_tissues], in `tissues` order)."""

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str | None = None,
        dna_length: int | None = None,
        fasta: str | Path | None = None,
    ):
        self.dataset_dir = Path(dataset_dir)
        self.metadata = read_metadata(self.dataset_dir)
        metadata_path = self.dataset_dir / METADATA_FILE
        try:
            self.tissues: list[str] = list(self.metadata["tissues"])
            self.dna_length = int(
                dna_length if dna_length is not None else self.metadata["dna_length"]
            )
        except KeyError as err:
            raise InputFormatError(metadata_path, f"missing key {err}") from None
        if self.dna_length < 1:
            raise IsoformerError(f"DNA length must be positive, got {self.dna_length}")
        self.fasta = resolve_fasta(self.dataset_dir, self.metadata, fasta)

        table = read_transcripts(self.dataset_dir, split)
        missing = [tissue for tissue in self.tissues if tissue not in table.columns]
        if missing:
            raise InputFormatError(
                self.dataset_dir / TRANSCRIPTS_FILE,
                f"missing target columns of tissues: {', '.join(missing)}",
            )
        self.transcript_ids: list[str] = table["transcript_id"].to_list()
        self.gene_ids: list[str] = table["gene_id"].to_list()
        self.chroms: list[str] = table["chrom"].to_list()
        self.strands: list[str] = table["strand"].to_list()
        self.tss: np.ndarray = table["tss"].to_numpy().astype(np.int64)
        self.rna: list[str] = table["rna"].to_list()
        self.protein: list[str] = table["protein"].to_list()
        self.targets: np.ndarray = (
            table.select(self.tissues).to_numpy().astype(np.float32)
        )  # [N, T]

        # Check the chromosomes once here, so a wrong --fasta fails before any worker starts.
        with Genome(self.fasta) as genome:
            absent = sorted({chrom for chrom in self.chroms if not genome.has(chrom)})
        if absent:
            raise IsoformerError(
                f"genome FASTA {self.fasta} lacks chromosomes of the dataset: "
                f"{', '.join(absent[:10])}; pass the --fasta the dataset was built from"
            )
        self._genome: Genome | None = None
        self._genome_pid: int | None = None

    @property
    def genome(self) -> Genome:
        """This process's handle on the FASTA, opened on first use."""
        if self._genome is None or self._genome_pid != os.getpid():
            self._genome = Genome(self.fasta)
            self._genome_pid = os.getpid()
        return self._genome

    def __len__(self) -> int:
        return len(self.transcript_ids)

    def sequence_lengths(self) -> list[int]:
        """RNA plus protein length per item (what its padded batch size depends on), read from
        the table: no DNA window is fetched."""
        return [len(rna) + len(protein) for rna, protein in zip(self.rna, self.protein)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        dna = self.genome.window(
            self.chroms[index], int(self.tss[index]), self.strands[index], self.dna_length
        )
        return {
            TRANSCRIPT_ID: self.transcript_ids[index],
            GENE_ID: self.gene_ids[index],
            DNA_SEQUENCE: dna,
            RNA_SEQUENCE: self.rna[index],
            PROTEIN_SEQUENCE: self.protein[index],
            TARGETS: self.targets[index],
        }

    def __getstate__(self) -> dict[str, Any]:
        # Spawned workers unpickle the dataset: they get no file handle and open their own.
        state = self.__dict__.copy()
        state["_genome"] = state["_genome_pid"] = None
        return state

    def close(self) -> None:
        if self._genome is not None and self._genome_pid == os.getpid():
            self._genome.close()
        self._genome = self._genome_pid = None


def open_split(
    dataset_dir: str | Path, split: str, dna_length: int | None = None,
    fasta: str | Path | None = None,
) -> TranscriptDataset:
    """One split's `TranscriptDataset`; an empty split is an error (nothing to fit or score)."""
    dataset = TranscriptDataset(dataset_dir, split=split, dna_length=dna_length, fasta=fasta)
    if len(dataset) == 0:
        dataset.close()
        raise IsoformerError(f"{dataset_dir}: the {split!r} split holds no transcripts")
    return dataset
