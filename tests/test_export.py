"""`export_jsonl` on a dataset built from the fixtures: DNA windows derived by hand.

ENST...01 (+, TSS chr1:10), 24 bp: [-2, 22) = NN + chr1[0:22] upper case.
ENST...03 (-, TSS chr2:95), 24 bp: reverse complement of [84, 108) on the 100-bp chr2 =
rc(CTGAACGTTTGCacgt + 8 N) = 8 N + ACGTGCAAACGTTCAG; index 12 starts the RNA (GCAAACG...).
"""

from __future__ import annotations

import json
import math

import pytest
from test_build import inputs  # noqa: F401  (fixture)
from test_gtex import TISSUES

from isoformer.data.build import build_dataset
from isoformer.data.export import export_jsonl
from isoformer.errors import IsoformerError


@pytest.fixture
def dataset(inputs, tmp_path):  # noqa: F811
    out = tmp_path / "dataset"
    build_dataset(**inputs, out=out, tissues=TISSUES, dna_length=24, progress=False)
    return out


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_all_records(dataset, tmp_path):
    output = tmp_path / "out" / "records.jsonl"
    assert export_jsonl(dataset, output, progress=False) == 3
    records = read_jsonl(output)
    assert [r["transcript_id"] for r in records] == [
        "ENST00000000001.1", "ENST00000000002.1", "ENST00000000003.2"
    ]
    first, minus = records[0], records[2]
    assert list(first) == ["transcript_id", "gene_id", "split", "utr5_length", "cds_length",
                           "utr3_length", "dna_sequence", "rna_sequence", "protein_sequence",
                           "targets"]
    # The regions of the 65-base RNA as the dataset stores them (test_build), and none for the
    # non-coding one.
    assert (first["utr5_length"], first["cds_length"], first["utr3_length"]) == (10, 48, 7)
    assert (records[1]["utr5_length"], records[1]["cds_length"]) == (0, 0)
    assert first["dna_sequence"] == "NNCCGTACGTTAGGACTCAGCAAT"
    assert first["protein_sequence"] == "MAWNDCHEKLIFPSY" and first["split"] == "train"
    assert first["targets"] == pytest.approx(
        {"Blood": math.log(3), "Brain": 0.0, "Liver": math.log(5)}, rel=1e-6
    )
    assert minus["dna_sequence"] == "NNNNNNNNACGTGCAAACGTTCAG"
    assert minus["rna_sequence"].startswith(minus["dna_sequence"][12:])
    assert records[1]["protein_sequence"] == ""
    assert [p.name for p in output.parent.iterdir()] == ["records.jsonl"]  # no temp file left


def test_export_options_and_nan_targets(inputs, tmp_path):  # noqa: F811
    out = tmp_path / "d"
    build_dataset(**inputs, out=out, tissues=["Liver", "Heart"], progress=False)
    output = tmp_path / "r.jsonl"
    assert export_jsonl(out, output, split="train", limit=1, dna_length=4, progress=False) == 1
    (record,) = read_jsonl(output)
    assert record["dna_sequence"] == "TAGG"  # chr1[8:12), the TSS (chr1[10], G) at index 2
    assert record["targets"]["Heart"] is None  # NaN is not JSON
    assert export_jsonl(out, output, split="test", progress=False) == 0
    assert output.read_text() == ""
    with pytest.raises(IsoformerError, match="unknown split 'dev'"):
        export_jsonl(out, tmp_path / "x.jsonl", split="dev", progress=False)
    assert not (tmp_path / "x.jsonl").exists()
