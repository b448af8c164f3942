"""`isoformer variant-effect` on the hand-built fixtures (tests/files genome.fa + annotation.gtf,
built into a dataset), scored by a one-epoch tiny run and a k-mer baseline trained on
tests/tiny_dataset.py (its three tissues, a 96-bp DNA window).

The fixture's transcripts (0-based half-open) with the run's 96-bp window (TSS at index 48):
- ENST...01 (+, chr1): exons [10,30) [50,80) [100,115), TSS 10, window [-38,58). 5'UTR 10 bases,
  CDS ATG GCC TGG AAC GAT TGC CAT ... (MAWNDCH...) from chr1 20, stop at chr1 105-107.
- ENST...02 (+, chr1): one exon [10,60), non-coding, TSS 10, window [-38,58).
- ENST...03 (-, chr2): exons [33,40) [51,70) [84,96), TSS 95, window [48,144) (past chr2's end,
  100); its 3'UTR after the stop codon is chr2 33-38.
The VCF's alleles (1-based POS, 0-based in brackets), VCF lines 6-14:
  6  chr1:5 A>C      [4]  promoter of 01 and 02: upstream_gene_variant, only their DNA changes
  7  chr1:50 <DEL>        symbolic: skipped and counted
  8  chr1:60 A>G     [59] 01's exon 2, past its window: codon 7 CAT>CGT, missense p.H7R (RNA,
                          protein); 02's exon: non_coding_transcript_exon_variant (RNA)
  9  chr1:100 T>C    [99] the genome holds G: a REF mismatch
  10 chr1:110 C>T   [109] 01's 3'UTR (RNA); past 02's span [-38,60)
  11 chr1:118 T>C   [117] past every chr1 span: no row
  12 chr2:6 C>G       [5] before 03's span [33,144): no row
  13 chr2:36 C>A     [35] 03's 3'UTR, minus strand (RNA)
  14 chr2:99 G>T,C   [98] 03's promoter, upstream of its TSS on the minus strand (DNA), 2 alleles
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest
from polars.testing import assert_frame_equal
from test_gtex import TISSUES as FIXTURE_TISSUES
from tiny_dataset import DNA_LENGTH, TISSUES, train_tiny_run

from isoformer.analysis.variant_effect import TranscriptIndex, score_variants
from isoformer.analysis.variant_effect_output import output_schema, summary_path
from isoformer.cli import main
from isoformer.data.build import build_dataset
from isoformer.data.dataset import read_transcripts
from isoformer.data.genome import Genome
from isoformer.data.variants import TranscriptStructure, variant_inputs
from isoformer.data.vcf import Variant
from isoformer.errors import InputFormatError, IsoformerError
from isoformer.model.prediction import Predictor, predict_records
from isoformer.training.baseline import fit_baseline
from isoformer.training.run import Run

pytestmark = pytest.mark.usefixtures("single_thread")

FILES = Path(__file__).parent / "files"
TX1, TX2, TX3 = "ENST00000000001.1", "ENST00000000002.1", "ENST00000000003.2"
HEADER = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=chr1,length=130>",
    "##contig=<ID=chr2,length=100>",
    "##contig=<ID=chrX,length=1000>",
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
]
ALLELES = [  # (CHROM, POS, REF, ALT), VCF lines 6-14 (see the module docstring)
    ("chr1", 5, "A", "C"),
    ("chr1", 50, "G", "<DEL>"),
    ("chr1", 60, "A", "G"),
    ("chr1", 100, "T", "C"),
    ("chr1", 110, "C", "T"),
    ("chr1", 118, "T", "C"),
    ("chr2", 6, "C", "G"),
    ("chr2", 36, "C", "A"),
    ("chr2", 99, "G", "T,C"),
]
# (variant_id, transcript_id, consequence, protein_change, modalities_changed), in output order.
EXPECTED_ROWS = [
    ("chr1:5:A:C", TX1, "upstream_gene_variant", "", "dna"),
    ("chr1:5:A:C", TX2, "upstream_gene_variant", "", "dna"),
    ("chr1:60:A:G", TX1, "missense_variant", "p.H7R", "rna,protein"),
    ("chr1:60:A:G", TX2, "non_coding_transcript_exon_variant", "", "rna"),
    ("chr1:110:C:T", TX1, "3_prime_UTR_variant", "", "rna"),
    ("chr2:36:C:A", TX3, "3_prime_UTR_variant", "", "rna"),
    ("chr2:99:G:T", TX3, "upstream_gene_variant", "", "dna"),
    ("chr2:99:G:C", TX3, "upstream_gene_variant", "", "dna"),
]
MISMATCH_LINE = 9


def _write_vcf(path: Path, alleles=ALLELES) -> Path:
    lines = [f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t.\t.\t." for chrom, pos, ref, alt in alleles]
    path.write_text("\n".join([*HEADER, *lines]) + "\n")
    return path


@pytest.fixture(scope="module")
def fixture_dataset(tmp_path_factory) -> Path:
    inputs = tmp_path_factory.mktemp("in")
    names = {"fasta": "genome.fa", "gtf": "annotation.gtf", "tpm": "gtex_transcript_tpm.gct",
             "samples": "gtex_sample_attributes.txt"}
    paths = {key: Path(shutil.copy(FILES / name, inputs / name)) for key, name in names.items()}
    out = tmp_path_factory.mktemp("fixture") / "dataset"
    build_dataset(**paths, out=out, tissues=FIXTURE_TISSUES, dna_length=24, test_fraction=0.5,
                  val_fraction=0.0, seed=3, progress=False)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def vcf(tmp_path_factory) -> Path:
    return _write_vcf(tmp_path_factory.mktemp("vcf") / "calls.vcf")


@pytest.fixture(scope="module")
def scored(run_dir, fixture_dataset, vcf, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "effects.tsv"
    summary = score_variants(run_dir, fixture_dataset, vcf, out, device="cpu", progress=False)
    return summary, _read_tsv(out)


def _read_tsv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", schema=output_schema(TISSUES),
                       empty_string_is_null=False)


def _expected_deltas(model, dataset: Path, rows: pl.DataFrame) -> np.ndarray:
    """alt - ref [rows, T] predicted apart from `score_variants`: reference inputs as the contract
    states them, ALT inputs from `variant_inputs`, one `predict_records` call each."""
    table = read_transcripts(dataset)
    structures = {row["transcript_id"]: TranscriptStructure.from_row(row)
                  for row in table.iter_rows(named=True)}
    refs, alts = [], []
    with Genome(FILES / "genome.fa") as genome:
        for variant_id, transcript_id in rows.select("variant_id", "transcript_id").iter_rows():
            chrom, pos, ref, alt = variant_id.split(":")
            tx = structures[transcript_id]
            inputs = variant_inputs(Variant(chrom, int(pos), ref, alt, 0), tx, genome, DNA_LENGTH)
            refs.append({"dna_sequence": genome.window(tx.chrom, tx.tss, tx.strand, DNA_LENGTH),
                         "rna_sequence": tx.rna, "protein_sequence": tx.protein})
            alts.append({"dna_sequence": inputs.dna, "rna_sequence": inputs.rna,
                         "protein_sequence": inputs.protein})
    return (predict_records(model, alts, batch_size=3).astype(np.float64)
            - predict_records(model, refs, batch_size=3))


def _structure(name: str, chrom: str, exons, tss: int, strand: str = "+"):
    return TranscriptStructure(name, "G", chrom, strand, tuple(exons), tss, "ACGT", "", 0, 0, 0, 0)


def test_index_finds_every_span_meeting_the_interval_in_given_order():
    """dna_length 10: spans A [95, 230) (window [95, 105), exons to 230), B [0, 1000) (makes the
    longest span 1000), C [494, 520) (minus strand, window [494, 504)), D on chr2."""
    a = _structure("A", "chr1", [(100, 120), (200, 230)], 100)
    b = _structure("B", "chr1", [(5, 1000)], 5)
    c = _structure("C", "chr1", [(500, 520)], 498, "-")
    d = _structure("D", "chr2", [(100, 120)], 100)
    index = TranscriptIndex([c, a, d, b], dna_length=10)

    def names(start, end, chrom="chr1"):
        return [tx.transcript_id for tx in index.overlapping(chrom, start, end)]

    assert names(94, 95) == ["B"]
    assert names(95, 96) == ["A", "B"]
    assert names(229, 230) == ["A", "B"]
    assert names(230, 231) == ["B"]
    assert names(490, 495) == ["C", "B"]  # the order given, not the order of starts
    assert names(1000, 1001) == []
    assert names(0, 2000) == ["C", "A", "B"]
    assert names(110, 111, "chr2") == ["D"] and names(0, 10, "chrM") == []


def test_one_row_per_allele_and_transcript_it_touches(scored):
    summary, table = scored
    assert table.columns == ["variant_id", "transcript_id", "gene_id", "consequence",
                             "protein_change", "modalities_changed", "delta_mean", *TISSUES]
    assert table.select("variant_id", "transcript_id", "consequence", "protein_change",
                        "modalities_changed").rows() == EXPECTED_ROWS
    assert table["gene_id"].to_list()[:4] == ["ENSG00000000001.1"] * 4
    assert table["gene_id"].to_list()[5:] == ["ENSG00000000002.3"] * 3
    assert (summary.records, summary.alleles, summary.symbolic) == (9, 9, 1)
    assert (summary.ref_mismatches, summary.first_ref_mismatch_line) == (1, MISMATCH_LINE)
    assert (summary.no_transcript, summary.rows) == (2, 8)
    assert {k: n for k, n in summary.consequences.items() if n} == {
        "upstream_gene_variant": 4, "missense_variant": 1,
        "non_coding_transcript_exon_variant": 1, "3_prime_UTR_variant": 2,
    }


def test_deltas_are_the_models_alt_minus_ref(scored, run_dir, fixture_dataset):
    _, table = scored
    deltas = table.select(TISSUES).to_numpy()
    expected = _expected_deltas(Run.open(run_dir).load_model(), fixture_dataset, table)
    # float32 predictions of ~1: batches of other records differ by a few 1e-7.
    np.testing.assert_allclose(deltas, expected, atol=1e-6)
    np.testing.assert_allclose(table["delta_mean"].to_numpy(), deltas.mean(axis=1), atol=1e-12)
    assert np.abs(deltas).max() > 1e-4  # the comparison is not one of zeros


def test_each_reference_window_is_read_from_the_fasta_once(run_dir, fixture_dataset, vcf,
                                                           tmp_path, monkeypatch):
    """TX1 and TX2 share the window of chr1's TSS 10 (+), TX3 has chr2's TSS 95 (-): one read
    each, for their 7 rows and their reference predictions (uncached: 5 + 2 and 3 + 1 reads)."""
    reads: Counter[tuple] = Counter()
    window = Genome.window

    def counted(genome, chrom, tss, strand, length):
        reads[chrom, tss, strand, length] += 1
        return window(genome, chrom, tss, strand, length)

    monkeypatch.setattr(Genome, "window", counted)
    score_variants(run_dir, fixture_dataset, vcf, tmp_path / "effects.tsv", device="cpu",
                   progress=False)
    assert reads == {("chr1", 10, "+", DNA_LENGTH): 1, ("chr2", 95, "-", DNA_LENGTH): 1}


def test_summary_file_and_parquet_equal_to_tsv(scored, run_dir, fixture_dataset, vcf, tmp_path):
    summary, _ = scored
    written = json.loads(summary_path(summary.output).read_text())
    assert written == {**summary.to_json(), "seconds": written["seconds"]}
    assert written["output"] == str(summary.output) and written["rows"] == 8

    for name in ("effects.tsv", "effects.parquet"):
        score_variants(run_dir, fixture_dataset, vcf, tmp_path / name, device="cpu",
                       progress=False)
    # The same predictions both times (one thread), and the TSV's floats read back exactly.
    assert_frame_equal(pl.read_parquet(tmp_path / "effects.parquet"),
                       _read_tsv(tmp_path / "effects.tsv"))
    assert (tmp_path / "effects.parquet.summary.json").is_file()


def test_each_reference_predicted_once_across_buffers(run_dir, fixture_dataset, vcf, tmp_path,
                                                      scored, monkeypatch):
    """With one allele per buffer: 3 references (01, 02, 03) + 8 ALTs, not 8 + 8."""
    predicted = []
    original = Predictor.predict

    def counting(self, records, *args, **kwargs):
        predicted.append(len(records))
        return original(self, records, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", counting)
    out = tmp_path / "effects.tsv"
    score_variants(run_dir, fixture_dataset, vcf, out, device="cpu", progress=False,
                   buffer_size=1)
    # chr1:5 (2 refs + 2), chr1:60 (2), chr1:110 (1), chr2:36 (1 ref + 1), chr2:99 T, C (1 each)
    assert predicted == [4, 2, 1, 2, 1, 1]
    assert_frame_equal(_read_tsv(out), scored[1], check_exact=False, abs_tol=1e-6)


def test_baseline_run_and_unread_modalities_give_zero(run_dir, fixture_dataset, vcf, tmp_path):
    """A DNA-only k-mer baseline: RNA / protein changes are exactly 0 without a prediction, DNA
    changes equal the baseline's own alt - ref."""
    data = Path(Run.open(run_dir).dataset["path"])
    baseline = fit_baseline(data, tmp_path / "baseline", modalities=["dna"],
                            overrides=[f"dna_length={DNA_LENGTH}"])
    out = tmp_path / "effects.tsv"
    summary = score_variants(baseline.directory, fixture_dataset, vcf, out, progress=False)
    table = _read_tsv(out)
    assert summary.rows == 8
    dna_only = (table["modalities_changed"] == "dna").to_numpy()
    deltas = table.select(TISSUES).to_numpy()
    assert (deltas[~dna_only] == 0).all()
    expected = _expected_deltas(baseline.load_model(), fixture_dataset, table.filter(dna_only))
    np.testing.assert_allclose(deltas[dna_only], expected, atol=1e-6)
    assert np.abs(deltas[dna_only]).max() > 0


def test_transcripts_option_limits_the_rows(run_dir, fixture_dataset, vcf, tmp_path):
    out = tmp_path / "effects.tsv"
    summary = score_variants(run_dir, fixture_dataset, vcf, out, transcripts=[TX3],
                             device="cpu", progress=False)
    assert _read_tsv(out)["variant_id"].to_list() == ["chr2:36:C:A", "chr2:99:G:T", "chr2:99:G:C"]
    assert summary.no_transcript == 5  # chr1:5, 60, 110, 118 and chr2:6
    with pytest.raises(IsoformerError, match="no transcript ENST9, ENST99.1 in the dataset"):
        score_variants(run_dir, fixture_dataset, vcf, tmp_path / "x.tsv",
                       transcripts=[TX1, "ENST99.1", "ENST9"], progress=False)
    assert not (tmp_path / "x.tsv").exists()


def test_alts_equal_to_ref_are_counted_in_the_summary(run_dir, fixture_dataset, tmp_path):
    """chr1:5 A>A,C: the A is no change, skipped and counted; the C gives TX1's and TX2's rows."""
    vcf = _write_vcf(tmp_path / "x.vcf", [("chr1", 5, "A", "A,C")])
    out = tmp_path / "effects.tsv"
    summary = score_variants(run_dir, fixture_dataset, vcf, out, device="cpu", progress=False)
    assert (summary.records, summary.alleles, summary.ref_equal_alt, summary.rows) == (1, 1, 1, 2)
    assert json.loads(summary_path(out).read_text())["ref_equal_alt"] == 1
    assert _read_tsv(out)["variant_id"].to_list() == ["chr1:5:A:C"] * 2


def test_a_transcript_deleted_whole_is_counted_not_scored(run_dir, fixture_dataset, tmp_path):
    """chr1:10 deletes chr1 [10, 60) after its anchor base [9]: all of TX2's one exon [10, 60)
    (transcript_ablation: skipped and counted), TX1's exon 1 and part of exon 2 (a row)."""
    with Genome(FILES / "genome.fa") as genome:
        ref = genome.fetch("chr1", 9, 60)
    vcf = _write_vcf(tmp_path / "x.vcf", [("chr1", 10, ref, ref[0])])
    out = tmp_path / "effects.tsv"
    summary = score_variants(run_dir, fixture_dataset, vcf, out, device="cpu", progress=False)
    assert (summary.rows, summary.transcript_ablations) == (1, 1)
    assert _read_tsv(out)["transcript_id"].to_list() == [TX1]
    assert summary.consequences["transcript_ablation"] == 0  # rows written: none of that kind


def test_strict_ref_mismatch_fails_with_the_line_and_writes_nothing(run_dir, fixture_dataset,
                                                                    vcf, tmp_path):
    out = tmp_path / "effects.parquet"
    with pytest.raises(InputFormatError) as error:
        score_variants(run_dir, fixture_dataset, vcf, out, strict=True, progress=False)
    assert error.value.line == MISMATCH_LINE
    assert f"{vcf}:{MISMATCH_LINE}: REF T of chr1:100:T:C differs from the genome's G" in str(
        error.value)
    assert list(tmp_path.iterdir()) == []


def test_contig_absent_from_the_genome_fails_with_the_line(run_dir, fixture_dataset, tmp_path):
    vcf = _write_vcf(tmp_path / "x.vcf", [ALLELES[0], ("chrX", 7, "A", "G")])
    with pytest.raises(InputFormatError, match=r"x\.vcf:7: contig 'chrX' is not in the genome"):
        score_variants(run_dir, fixture_dataset, vcf, tmp_path / "out.tsv", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.vcf"]


def test_dataset_without_exon_structure_asks_for_a_rebuild(run_dir, vcf, tmp_path):
    old = Path(Run.open(run_dir).dataset["path"])  # tiny_dataset.py writes no exon columns
    with pytest.raises(IsoformerError, match="isoformer build"):
        score_variants(run_dir, old, vcf, tmp_path / "out.tsv", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_tsv_or_parquet(run_dir, fixture_dataset, vcf, tmp_path):
    with pytest.raises(IsoformerError, match=r"effects\.csv: the output must end in \.tsv or "):
        score_variants(run_dir, fixture_dataset, vcf, tmp_path / "effects.csv")


def test_cli_end_to_end(run_dir, fixture_dataset, vcf, tmp_path, capsys, scored):
    """On the VCF bgzipped, with the transcripts of chr1 only."""
    bgzipped = tmp_path / "calls.vcf.gz"
    pysam.tabix_compress(str(vcf), str(bgzipped))
    out = tmp_path / "effects.tsv"
    args = ["variant-effect", "--run", str(run_dir), "--data", str(fixture_dataset), "--vcf",
            str(bgzipped), "--out", str(out), "--device", "cpu", "--batch-size", "2",
            "--no-progress", "--transcripts", f"{TX1}, {TX2}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "9 records, 9 alleles: 5 rows" in printed and f"written: {out}" in printed
    assert_frame_equal(_read_tsv(out), scored[1].filter(pl.col("transcript_id") != TX3),
                       check_exact=False, abs_tol=1e-6)

    assert main([*args[:8], str(tmp_path / "strict.tsv"), "--strict", "--no-progress"]) == 2
    assert f"{bgzipped}:{MISMATCH_LINE}: REF T" in capsys.readouterr().err
    assert not (tmp_path / "strict.tsv").exists()
