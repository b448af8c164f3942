"""`import_instadeep` on a hand-built CSV in the published layout, over tests/files/genome.fa.

Row 1 is ENST...01's span written as chr "1", 1-based 11..115, "+": TSS 10 (same as `build`).
Row 2 is ENST...03's span as "chr2", 34..96, strand "-1": TSS 95.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isoformer.constants import DNA_SEQUENCE, TISSUES
from isoformer.data.dataset import TranscriptDataset
from isoformer.data.instadeep import import_instadeep, parse_column_overrides
from isoformer.data.schema import METADATA_FILE, TRANSCRIPTS_FILE
from isoformer.errors import InputFormatError, IsoformerError

FILES = Path(__file__).parent / "files"
HEADER = [
    "transcript_id_gtex",
    "gene_id_gtex",
    "split",
    "chr",
    "strand",
    "start",
    "end",
    "5UTR",
    "3UTR",
    "RNA",
    "CDS",
    "Protein",
    *TISSUES,
]


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows() -> list[dict[str, str]]:
    plus = {
        "transcript_id_gtex": "ENST00000000001.1",
        "gene_id_gtex": "ENSG00000000001.1",
        "split": "train",
        "chr": "1",
        "strand": "+",
        "start": "11",
        "end": "115",
        "5UTR": "GGACTCAGCA",
        "3UTR": "GCAUUCA",
        "RNA": "ggacucagcaAUGGCCUGG",
        "CDS": "",
        "Protein": "MAW*",
        **{t: str(0.5 * i) for i, t in enumerate(TISSUES)},
    }
    minus = {
        **plus,
        "transcript_id_gtex": "ENST00000000003.2",
        "gene_id_gtex": "ENSG00000000002.3",
        "split": "validation",
        "chr": "chr2",
        "strand": "-1",
        "start": "34",
        "end": "96",
        "5UTR": "0",
        "3UTR": "6",
        "CDS": "32",
        "RNA": "GCAAACGUUCAGGACUUAUUCAAUGGGUUUGACCUGAA",
        "Protein": "KRSGLIQWV",
        "Brain": "",
    }
    return [plus, minus]


@pytest.fixture
def fasta(tmp_path) -> Path:
    return Path(shutil.copy(FILES / "genome.fa", tmp_path / "genome.fa"))


def test_import(tmp_path, fasta):
    csv_path = write_csv(tmp_path / "GTEx_final.csv", rows())
    out = tmp_path / "dataset"
    assert import_instadeep(csv_path, fasta, out) == 2
    table = pl.read_parquet(out / TRANSCRIPTS_FILE)
    plus, minus = table.rows(named=True)
    assert (plus["chrom"], plus["strand"], plus["start"], plus["end"], plus["tss"]) == (
        "chr1",
        "+",
        10,
        115,
        10,
    )
    assert (minus["chrom"], minus["strand"], minus["start"], minus["end"], minus["tss"]) == (
        "chr2",
        "-",
        33,
        96,
        95,
    )
    assert plus["rna"] == "GGACTCAGCAATGGCCTGG" and plus["protein"] == "MAW"
    # 5'UTR/3'UTR given as sequences (10, 7 bases), CDS left to the rest: 19 - 17 = 2.
    assert (plus["utr5_length"], plus["cds_length"], plus["utr3_length"]) == (10, 2, 7)
    assert (minus["utr5_length"], minus["cds_length"], minus["utr3_length"]) == (0, 32, 6)
    assert (plus["split"], minus["split"]) == ("train", "valid")
    assert table["Liver"].to_list() == [0.5 * TISSUES.index("Liver")] * 2
    assert math.isnan(table["Brain"][1])
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["source"] == "instadeep" and metadata["counts"]["missing_targets"] == 1
    assert metadata["column_mapping"]["chrom"] == "chr"
    # DNA comes from the FASTA by coordinates: the same windows as `build` gives these spans.
    dataset = TranscriptDataset(out, dna_length=24)
    assert dataset[0][DNA_SEQUENCE] == "NNCCGTACGTTAGGACTCAGCAAT"
    assert dataset[1][DNA_SEQUENCE] == "NNNNNNNNACGTGCAAACGTTCAG"
    np.testing.assert_allclose(dataset[0]["targets"], [0.5 * i for i in range(30)])


def test_column_overrides(tmp_path, fasta):
    header = [("tx" if h == "transcript_id_gtex" else h) for h in HEADER]
    data = [
        {("tx" if k == "transcript_id_gtex" else k): v for k, v in row.items()} for row in rows()
    ]
    csv_path = write_csv(tmp_path / "renamed.csv", data, header)
    with pytest.raises(
        InputFormatError,
        match=r"missing columns \(transcript_id -> "
        r"'transcript_id_gtex'\); columns found: tx, ",
    ):
        import_instadeep(csv_path, fasta, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    overrides = parse_column_overrides(["transcript_id=tx"])
    assert overrides == {"transcript_id": "tx"}
    assert import_instadeep(csv_path, fasta, tmp_path / "b", columns=overrides) == 2
    with pytest.raises(IsoformerError, match="expected OURS=THEIRS"):
        parse_column_overrides(["transcript_id"])
    with pytest.raises(IsoformerError, match="'colour' is not one of"):
        parse_column_overrides(["colour=red"])


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"chr": "chr9"}, "chromosome 'chr9' is not in FASTA"),
        ({"strand": "."}, ":3: unknown strand '.'"),
        ({"end": "500"}, ":3: span 34..500 is not within chr2"),
        ({"Liver": "high"}, ":3: Liver: target 'high' is not a number"),
        ({"transcript_id_gtex": "ENST00000000001.1"}, ":3: transcript id 'ENST00000000001.1' is"),
    ],
)
def test_bad_rows(tmp_path, fasta, change, problem):
    data = rows()
    data[1].update(change)
    with pytest.raises(InputFormatError, match=problem):
        import_instadeep(write_csv(tmp_path / "bad.csv", data), fasta, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "genome.fa", "genome.fa.fai"]
