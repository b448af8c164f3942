"""`build_dataset` end to end on the hand-built fixtures, the gene split, and no output on errors.

Inputs: tests/files/genome.fa + annotation.gtf (sequences derived in test_gencode.py) and the
gtex_* GCT / sample attributes (targets derived in test_gtex.py). The GCT holds ENST...01-03
and ENST...99 (not in the GTF); the GTF holds ENST...04 (not in the GCT).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_gtex import EXPECTED, TISSUES

from isoformer.data.build import build_dataset
from isoformer.data.dataset import read_transcripts
from isoformer.data.schema import (
    METADATA_FILE,
    STRUCTURE_COLUMNS,
    TRANSCRIPT_COLUMNS,
    TRANSCRIPTS_FILE,
)
from isoformer.data.splits import (
    assign_chromosome_splits,
    check_chromosomes_present,
    resolve_chromosome_lists,
    split_genes,
)
from isoformer.errors import InputFormatError, IsoformerError

FILES = Path(__file__).parent / "files"


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    """Copies of the fixtures (pyfaidx writes genome.fa.fai next to the FASTA)."""
    names = {
        "fasta": "genome.fa",
        "gtf": "annotation.gtf",
        "tpm": "gtex_transcript_tpm.gct",
        "samples": "gtex_sample_attributes.txt",
    }
    (tmp_path / "in").mkdir()
    return {
        key: Path(shutil.copy(FILES / name, tmp_path / "in" / name)) for key, name in names.items()
    }


def build(inputs: dict[str, Path], out: Path, **kwargs):
    return build_dataset(**inputs, out=out, tissues=TISSUES, progress=False, **kwargs)


def test_build_end_to_end(inputs, tmp_path):
    out = tmp_path / "dataset"
    report = build(inputs, out, dna_length=24, test_fraction=0.5, val_fraction=0.0, seed=3)
    table = pl.read_parquet(out / TRANSCRIPTS_FILE)
    assert table.columns == [*TRANSCRIPT_COLUMNS, *STRUCTURE_COLUMNS, *TISSUES]
    assert [table[t].dtype for t in TISSUES] == [pl.Float32] * 3
    assert table["transcript_id"].to_list() == [
        "ENST00000000001.1",
        "ENST00000000002.1",
        "ENST00000000003.2",
    ]
    first = table.row(0, named=True)
    assert {
        k: first[k]
        for k in (
            "gene_id",
            "gene_name",
            "transcript_type",
            "chrom",
            "strand",
            "start",
            "end",
            "tss",
        )
    } == {
        "gene_id": "ENSG00000000001.1",
        "gene_name": "GENEP",
        "transcript_type": "protein_coding",
        "chrom": "chr1",
        "strand": "+",
        "start": 10,
        "end": 115,
        "tss": 10,
    }
    assert first["rna"] == "GGACTCAGCAATGGCCTGGAACGATTGCCATGAAAAGCTGATCTTCCCGAGCTACTAAGCATTCA"
    assert (first["protein"], first["utr5_length"], first["cds_length"], first["utr3_length"]) == (
        "MAWNDCHEKLIFPSY",
        10,
        48,
        7,
    )
    minus = table.row(2, named=True)
    assert (minus["strand"], minus["start"], minus["end"], minus["tss"]) == ("-", 33, 96, 95)
    assert minus["protein"] == "KRSGLIQWV"
    # Structure, from the GTF's 1-based exon rows: ENST...01 11-30, 51-80, 101-115 (first CDS row
    # phase 0); ENST...02 11-60 (no CDS); ENST...03 (-) 34-40, 52-70, 85-96, its first CDS row in
    # transcript order is the highest one, 85-96, with phase 2.
    assert table.select(STRUCTURE_COLUMNS).rows() == [
        ([10, 50, 100], [30, 80, 115], 0),
        ([10], [60], 0),
        ([33, 51, 84], [40, 70, 96], 2),
    ]
    assert table.schema["exon_starts"] == pl.List(pl.Int64)
    assert table.schema["cds_phase"] == pl.Int64
    np.testing.assert_allclose(table.select(TISSUES).to_numpy(), EXPECTED[:3], rtol=1e-6)

    # Two genes, test_fraction 0.5 -> one test gene; the isoforms of ENSG...01 share a split.
    expected_split = split_genes(["ENSG00000000001.1", "ENSG00000000002.3"], 0.0, 0.5, 3)
    assert sorted(expected_split.values()) == ["test", "train"]
    assert table["split"].to_list() == [expected_split[g] for g in table["gene_id"].to_list()]
    assert report.dropped == {"gct_not_in_gtf": 1, "gtf_not_in_gct": 1}
    assert report.kept == 3

    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["tissues"] == TISSUES and metadata["dna_length"] == 24
    assert metadata["fasta"]["path"] == str(inputs["fasta"].resolve())
    assert metadata["split"]["seed"] == 3 and metadata["split"]["test_fraction"] == 0.5
    assert metadata["counts"]["dropped"] == {"gct_not_in_gtf": 1, "gtf_not_in_gct": 1}
    assert metadata["counts"]["ignored_samples_by_tissue"] == {"Bone Marrow": 1}
    assert metadata["samples_per_tissue"] == {"Blood": 2, "Brain": 1, "Liver": 3}
    tpm = metadata["inputs"]["tpm"]
    assert tpm["name"] == "gtex_transcript_tpm.gct"
    assert tpm["size"] == inputs["tpm"].stat().st_size
    assert tpm["sha256"] == hashlib.sha256(inputs["tpm"].read_bytes()).hexdigest()
    assert set(metadata) >= {"format_version", "isoformer_version", "inputs", "counts"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "in"]  # no temp dir left


def test_protein_coding_only_unusable_cds_and_non_acgtn(inputs, tmp_path):
    # ENST...04 (lincRNA, one IUPAC base) joins the GCT; ENST...01's second CDS row gets phase 0
    # instead of 2, which breaks its reading frame.
    lines = inputs["tpm"].read_text().splitlines()
    lines[1] = "5\t7"
    lines.append("ENST00000000004.1\tENSG00000000003.1\t1\t1\t1\t1\t1\t1\t1")
    inputs["tpm"].write_text("\n".join(lines) + "\n")
    report = build(inputs, tmp_path / "all")
    assert (
        report.kept == 4 and report.non_acgtn_bases == 1 and report.transcripts_with_non_acgtn == 1
    )
    assert report.dropped == {"gct_not_in_gtf": 1, "gtf_not_in_gct": 0}

    gtf = inputs["gtf"].read_text().replace("51\t80\t.\t+\t2", "51\t80\t.\t+\t0")
    inputs["gtf"].write_text(gtf)
    report = build(inputs, tmp_path / "coding", protein_coding_only=True)
    assert report.kept == 1  # ENST...03
    assert report.dropped == {
        "gct_not_in_gtf": 1,
        "gtf_not_in_gct": 0,
        "non_coding": 2,
        "unusable_cds_phase_mismatch": 1,
    }


def test_datasets_without_structure_columns_still_read(inputs, tmp_path):
    # A dataset built before the structure columns existed: the same table without them.
    out = tmp_path / "dataset"
    build(inputs, out)
    path = out / TRANSCRIPTS_FILE
    pl.read_parquet(path).drop(STRUCTURE_COLUMNS).write_parquet(path)
    table = read_transcripts(out)
    assert table.columns == [*TRANSCRIPT_COLUMNS, *TISSUES]
    assert table.height == 3


def test_tissue_without_samples_gives_nan_targets(inputs, tmp_path):
    report = build_dataset(**inputs, out=tmp_path / "d", tissues=["Liver", "Heart"], progress=False)
    table = pl.read_parquet(tmp_path / "d" / TRANSCRIPTS_FILE)
    assert table["Heart"].is_nan().all() and report.tissues_without_samples == ["Heart"]


def test_bad_inputs_leave_no_dataset(inputs, tmp_path):
    inputs["fasta"].write_text(FILES.joinpath("genome.fa").read_text().split(">chr2")[0])
    with pytest.raises(
        InputFormatError,
        match="annotation.gtf:19: transcript ENST00000000003.2: chromosome 'chr2' is not in FASTA",
    ):
        build(inputs, tmp_path / "dataset")
    inputs["tpm"].write_text(inputs["tpm"].read_text().replace("\t9\t", "\tnine\t"))
    with pytest.raises(InputFormatError, match="gtex_transcript_tpm.gct:5: column 5: TPM 'nine'"):
        build(inputs, tmp_path / "dataset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_refuses_non_empty_output_and_bad_options(inputs, tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(IsoformerError, match="already exists and is not empty"):
        build(inputs, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(IsoformerError, match="--tissues lists Blood more than once"):
        build_dataset(**inputs, out=tmp_path / "d", tissues=["Blood", "Blood"], progress=False)
    with pytest.raises(IsoformerError, match="must be below 1"):
        build(inputs, tmp_path / "d", val_fraction=0.5, test_fraction=0.5)
    empty = tmp_path / "empty"
    empty.mkdir()
    build(inputs, empty)  # an existing empty directory is fine
    assert (empty / TRANSCRIPTS_FILE).is_file()


def test_gene_split_is_deterministic_sized_and_leak_free():
    genes = [f"ENSG{i:05d}" for i in range(1000) for _ in range(1 + i % 3)]  # 1-3 isoforms each
    split = split_genes(genes, 0.1, 0.2, seed=7)
    assert split == split_genes(list(reversed(genes)), 0.1, 0.2, seed=7)  # order-independent
    assert split != split_genes(genes, 0.1, 0.2, seed=8)
    values = list(split.values())
    assert (values.count("test"), values.count("valid"), values.count("train")) == (200, 100, 700)
    # A dict maps each gene to exactly one split: no gene can sit in two.
    assert set(split) == set(genes)


# ---- chromosome split (issue 11: the protocols of GenBio and Otari) ----


def test_chromosome_split_assignments_by_hand():
    chromosomes = ["chr1", "chr8", "chr19", "chr20", "chr21", "chr22", "chrX", "chrM", "chr8"]
    genes = [f"G{i}" for i in range(8)] + ["G1"]  # G1's two isoforms, both on chr8
    test, valid = resolve_chromosome_lists(None, None)  # GenBio: 20 valid, 21 + 22 test
    assert (test, valid) == (["chr21", "chr22"], ["chr20"])
    assert assign_chromosome_splits(genes, chromosomes, test, valid) == [
        "train", "train", "train", "valid", "test", "test", "train", "train", "train"]
    # Otari: chr8 held out, no valid chromosomes -> validation genes drawn from the others.
    otari = assign_chromosome_splits(genes, chromosomes, ["chr8"], [])
    assert otari == ["test" if c == "chr8" else "train" for c in chromosomes]
    drawn = assign_chromosome_splits(genes, chromosomes, ["chr8"], None, val_fraction=0.5, seed=4)
    expected = split_genes([g for g, c in zip(genes, chromosomes) if c != "chr8"], 0.5, 0.0, 4)
    assert drawn == ["test" if c == "chr8" else expected[g] for g, c in zip(genes, chromosomes)]
    # 7 non-test genes (one isoform each), round(0.5 * 7) = 4 of them valid.
    assert drawn.count("valid") == 4 and drawn.count("train") == 3

    with pytest.raises(IsoformerError, match="1 gene.*different splits.*G1"):
        assign_chromosome_splits(["G0", "G1", "G1"], ["chr1", "chr8", "chr2"], ["chr8"], [])
    with pytest.raises(IsoformerError, match="leaves no transcript to train on"):
        assign_chromosome_splits(["G0", "G1"], ["chr8", "chr20"], ["chr8"], ["chr20"])
    with pytest.raises(IsoformerError, match="leaves no transcript to train on"):
        assign_chromosome_splits(["G0", "G1"], ["chr8", "chr1"], ["chr8"], None, val_fraction=0.9)
    with pytest.raises(IsoformerError, match="--valid-chromosomes chr3: no transcript left"):
        assign_chromosome_splits(["G0", "G1"], ["chr8", "chr1"], ["chr8"], ["chr3"])


def test_chromosome_lists_are_checked():
    assert resolve_chromosome_lists(["chr8"], None) == (["chr8"], None)
    with pytest.raises(IsoformerError, match="chr20 is in both --test-chromosomes and --valid"):
        resolve_chromosome_lists(["chr21", "chr20"], ["chr20"])
    with pytest.raises(IsoformerError, match="--test-chromosomes lists chr8 more than once"):
        resolve_chromosome_lists(["chr8", "chr8"], None)
    with pytest.raises(IsoformerError, match="name the test chromosomes"):
        resolve_chromosome_lists(None, ["chr20"])
    check_chromosomes_present(["chr2"], {"chr1", "chr2"}, "--test-chromosomes")
    with pytest.raises(IsoformerError, match=r"--test-chromosomes: 8 is not in the annotation "
                       r"\(its chromosomes: chr2, chr8, chrX\); did you mean chr8 instead of 8\?"):
        check_chromosomes_present(["8"], {"chrX", "chr8", "chr2"}, "--test-chromosomes")


def test_build_with_a_chromosome_split(inputs, tmp_path):
    # Kept transcripts: ENST...01 and 02 (gene ...01, chr1), ENST...03 (gene ...02, chr2); chr3's
    # transcripts are not in the GCT.
    out = tmp_path / "by_chromosome"
    report = build(inputs, out, split="chromosome", test_chromosomes=["chr2"],
                   valid_chromosomes=[])
    table = pl.read_parquet(out / TRANSCRIPTS_FILE)
    assert dict(zip(table["transcript_id"], table["split"])) == {
        "ENST00000000001.1": "train", "ENST00000000002.1": "train", "ENST00000000003.2": "test"}
    assert report.split_transcripts == {"train": 2, "valid": 0, "test": 1}
    split = json.loads((out / METADATA_FILE).read_text())["split"]
    assert split == {
        "method": "chromosome", "test_chromosomes": ["chr2"], "valid_chromosomes": [],
        "valid_by": "chromosome", "transcripts": {"train": 2, "valid": 0, "test": 1},
        "genes": {"train": 1, "valid": 0, "test": 1},
        "chromosomes": {"train": ["chr1"], "valid": [], "test": ["chr2"]},
    }
    # Without valid chromosomes the validation genes come from the others, by fraction.
    build(inputs, tmp_path / "hybrid", split="chromosome", test_chromosomes=["chr1"],
          val_fraction=0.0, seed=5)
    split = json.loads((tmp_path / "hybrid" / METADATA_FILE).read_text())["split"]
    assert (split["valid_by"], split["val_fraction"], split["seed"]) == ("gene", 0.0, 5)
    assert split["chromosomes"] == {"train": ["chr2"], "valid": [], "test": ["chr1"]}
    # The gene split records its chromosomes too.
    build(inputs, tmp_path / "by_gene", test_fraction=0.5, val_fraction=0.0, seed=3)
    split = json.loads((tmp_path / "by_gene" / METADATA_FILE).read_text())["split"]
    assert split["method"] == "gene" and sorted(sum(split["chromosomes"].values(), [])) == [
        "chr1", "chr2"]


def test_chromosome_split_errors_leave_no_dataset(inputs, tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(IsoformerError, match=r"--test-chromosomes: chr8 is not in annotation.gtf "
                       r"\(its chromosomes: chr1, chr2, chr3\)"):
        build(inputs, out, split="chromosome", test_chromosomes=["chr8"])
    with pytest.raises(IsoformerError, match="chr21, chr22 are not in annotation.gtf"):
        build(inputs, out, split="chromosome")  # GenBio's default lists
    with pytest.raises(IsoformerError, match="chr2 is in both"):
        build(inputs, out, split="chromosome", test_chromosomes=["chr2"],
              valid_chromosomes=["chr2"])
    with pytest.raises(IsoformerError, match="leaves no transcript to train on"):
        build(inputs, out, split="chromosome", test_chromosomes=["chr2"],
              valid_chromosomes=["chr1"])
    # chr3 is annotated, but none of its transcripts is in the GCT.
    with pytest.raises(IsoformerError, match="--valid-chromosomes chr3: no transcript left"):
        build(inputs, out, split="chromosome", test_chromosomes=["chr2"],
              valid_chromosomes=["chr3"])
    with pytest.raises(IsoformerError, match="--test-chromosomes need --split chromosome"):
        build(inputs, out, test_chromosomes=["chr2"])
    with pytest.raises(IsoformerError, match="--split 'region': choose one of gene, chromosome"):
        build(inputs, out, split="region")
    with pytest.raises(IsoformerError, match="no transcript to train on"):  # gene split too
        build(inputs, out, val_fraction=0.4, test_fraction=0.4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
