"""TranscriptDataset on a hand-written transcripts.parquet + metadata.json over genome.fa.

Rows are the fixture's three kinds of transcript (see tests/test_gencode.py); windows as derived
in tests/test_genome.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from isoformer.constants import (
    DNA_SEQUENCE,
    GENE_ID,
    PROTEIN_SEQUENCE,
    RNA_SEQUENCE,
    TARGETS,
    TRANSCRIPT_ID,
)
from isoformer.data.dataset import TranscriptDataset, read_metadata, read_transcripts
from isoformer.data.schema import METADATA_FILE, TRANSCRIPTS_FILE
from isoformer.errors import InputFormatError, IsoformerError

FILES = Path(__file__).parent / "files"
TISSUES = ["Brain", "Liver"]
ROWS = {
    "transcript_id": ["ENST00000000001.1", "ENST00000000003.2", "ENST00000000004.1"],
    "gene_id": ["ENSG00000000001.1", "ENSG00000000002.3", "ENSG00000000003.1"],
    "gene_name": ["GENEP", "GENEM", "GENEN"],
    "transcript_type": ["protein_coding", "protein_coding", "lincRNA"],
    "chrom": ["chr1", "chr2", "chr3"],
    "strand": ["+", "-", "+"],
    "start": [10, 33, 5],
    "end": [115, 96, 35],
    "tss": [10, 95, 5],
    "rna": [
        "GGACTCAGCAATGGCCTGGAACGATTGCCATGAAAAGCTGATCTTCCCGAGCTACTAAGCATTCA",
        "GCAAACGTTCAGGACTTATTCAATGGGTTTGACCTGAA",
        "ACGTNCCTTATTGGCCAATT",
    ],
    "protein": ["MAWNDCHEKLIFPSY", "KRSGLIQWV", ""],
    "utr5_length": [10, 0, 0],
    "cds_length": [48, 32, 0],
    "utr3_length": [7, 6, 0],
    "split": ["train", "test", "train"],
    "Brain": [0.5, 1.25, 0.0],
    "Liver": [2.0, 0.0, 3.5],
}


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    fasta = tmp_path / "genome" / "genome.fa"
    fasta.parent.mkdir()
    shutil.copy(FILES / "genome.fa", fasta)
    out = tmp_path / "dataset"
    out.mkdir()
    pl.DataFrame(ROWS).with_columns(pl.col(TISSUES).cast(pl.Float32)).write_parquet(
        out / TRANSCRIPTS_FILE
    )
    metadata = {"tissues": TISSUES, "dna_length": 24, "fasta": {"path": str(fasta.resolve())}}
    (out / METADATA_FILE).write_text(json.dumps(metadata))
    return out


def test_items_carry_windows_sequences_and_targets(dataset_dir):
    data = TranscriptDataset(dataset_dir)
    assert len(data) == 3 and data.tissues == TISSUES and data.dna_length == 24
    first, second, third = data[0], data[1], data[2]
    assert set(first) == {
        TRANSCRIPT_ID,
        GENE_ID,
        DNA_SEQUENCE,
        RNA_SEQUENCE,
        PROTEIN_SEQUENCE,
        TARGETS,
    }
    assert (first[TRANSCRIPT_ID], first[GENE_ID]) == ("ENST00000000001.1", "ENSG00000000001.1")
    # TSS windows of 24: past the start of chr1 (+), past the end of chr2 (-), chr3's R read as N.
    assert first[DNA_SEQUENCE] == "NNCCGTACGTTAGGACTCAGCAAT"
    assert second[DNA_SEQUENCE] == "NNNNNNNNACGTGCAAACGTTCAG"
    assert third[DNA_SEQUENCE] == "NNNNNNNGGGCCACGTNCCTTAGT"
    assert (second[RNA_SEQUENCE], second[PROTEIN_SEQUENCE]) == (ROWS["rna"][1], "KRSGLIQWV")
    assert third[PROTEIN_SEQUENCE] == ""
    assert first[TARGETS].dtype == np.float32
    np.testing.assert_array_equal(second[TARGETS], np.array([1.25, 0.0], dtype=np.float32))


def test_split_and_window_length_are_chosen_at_load_time(dataset_dir):
    test = TranscriptDataset(dataset_dir, split="test", dna_length=5)
    assert test.transcript_ids == ["ENST00000000003.2"]
    assert test[0][DNA_SEQUENCE] == "GTGCA"  # rc(chr2[93:98]), TSS at index 2
    assert read_transcripts(dataset_dir, "train")["transcript_id"].to_list() == [
        "ENST00000000001.1",
        "ENST00000000004.1",
    ]
    with pytest.raises(IsoformerError, match="unknown split 'validation'"):
        read_transcripts(dataset_dir, "validation")


def test_fasta_override_and_missing_fasta(dataset_dir, tmp_path):
    moved = tmp_path / "elsewhere.fa"
    recorded = Path(read_metadata(dataset_dir)["fasta"]["path"])
    recorded.rename(moved)
    with pytest.raises(IsoformerError, match=f"genome FASTA {recorded} .*not found; pass --fasta"):
        TranscriptDataset(dataset_dir)
    assert (
        TranscriptDataset(dataset_dir, fasta=moved)[0][DNA_SEQUENCE] == "NNCCGTACGTTAGGACTCAGCAAT"
    )


def test_fasta_without_the_dataset_chromosomes_is_refused(dataset_dir, tmp_path):
    other = tmp_path / "other.fa"
    other.write_text(">chr1\nACGT\n")
    with pytest.raises(IsoformerError, match="lacks chromosomes of the dataset: chr2, chr3"):
        TranscriptDataset(dataset_dir, fasta=other)


def test_not_a_dataset_and_broken_files(dataset_dir, tmp_path):
    with pytest.raises(IsoformerError, match="not a dataset directory"):
        TranscriptDataset(tmp_path)
    (dataset_dir / METADATA_FILE).write_text('{"tissues": ["Brain"],\n "dna_length": }')
    with pytest.raises(InputFormatError, match=f"{dataset_dir / METADATA_FILE}:2: not valid JSON"):
        read_metadata(dataset_dir)
    (dataset_dir / METADATA_FILE).write_text(
        json.dumps(
            {
                "tissues": ["Brain", "Lung"],
                "dna_length": 24,
                "fasta": {"path": "../genome/genome.fa"},
            }
        )
    )
    with pytest.raises(InputFormatError, match="missing target columns of tissues: Lung"):
        TranscriptDataset(dataset_dir)  # a relative recorded path is relative to the dataset
    pl.DataFrame({"transcript_id": ["x"]}).write_parquet(dataset_dir / TRANSCRIPTS_FILE)
    with pytest.raises(InputFormatError, match="missing columns: gene_id, gene_name"):
        read_transcripts(dataset_dir)


def test_worker_processes_open_their_own_fasta(dataset_dir):
    data = TranscriptDataset(dataset_dir)
    expected = [data[i][DNA_SEQUENCE] for i in range(3)]  # the parent now holds a handle
    parent_handle = data.genome
    # Forked workers see another pid and reopen; pickled (spawned) copies carry no handle.
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    assert [item[DNA_SEQUENCE] for item in loader] == expected
    assert data.genome is parent_handle
    data._genome_pid = -1  # as seen from a forked child: the inherited handle is not reused
    assert data.genome is not parent_handle
    copy = pickle.loads(pickle.dumps(data))
    assert copy._genome is None and copy[1][DNA_SEQUENCE] == expected[1]
    copy.close()
    data.close()
