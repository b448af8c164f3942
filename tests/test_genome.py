"""Genome: fetch with N-padding, strand-aware TSS windows, upper-casing, bad FASTA files.

tests/files/genome.fa, 0-based positions (lower case = soft-masked in the file):
  chr1 (130 bp): [0,10) ccgtacgtta  [10,20) ggacTCAGCA  [20,30) ATGGCCTGGA  ...
                 [115,130) GGTTNNNNNNNNACG
  chr2 (100 bp): ...  [84,96) CTGAACGTTTGC  [96,100) acgt
  chr3 (60 bp):  GGGCC ACGTrCCTTA GTNNNNNNAG TTGGCCAATT CCCCCAAAAAGGGGGTTTTTACGTA
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from isoformer.data.genome import Genome, reverse_complement, window_interval
from isoformer.errors import InputFormatError, IsoformerError

FILES = Path(__file__).parent / "files"
CHR3 = "GGGCCACGTRCCTTAGTNNNNNNAGTTGGCCAATTCCCCCAAAAAGGGGGTTTTTACGTA"


@pytest.fixture
def genome(tmp_path: Path):
    # A copy, so pyfaidx writes its index under tmp_path and never into the source tree.
    fasta = tmp_path / "genome.fa"
    shutil.copy(FILES / "genome.fa", fasta)
    with Genome(fasta) as genome:
        yield genome


def test_index_is_built_and_lengths_read(genome):
    assert genome.path.with_suffix(".fa.fai").is_file()
    assert genome.chroms == ["chr1", "chr2", "chr3"]
    assert [genome.chrom_length(c) for c in genome.chroms] == [130, 100, 60]
    assert genome.has("chr2") and not genome.has("chrX")
    with pytest.raises(IsoformerError, match="no sequence named 'chrX'"):
        genome.chrom_length("chrX")


def test_fetch_upper_cases_soft_masked_bases(genome):
    # chr1[5:25) = "cgtta" + "ggacTCAGCA" + "ATGGC"
    assert genome.fetch("chr1", 5, 25) == "CGTTAGGACTCAGCAATGGC"
    # chr3 keeps its N run and its IUPAC r (upper-cased); Genome does not rewrite bases.
    assert genome.fetch("chr3", 0, 60) == CHR3
    assert genome.fetch("chr3", 7, 7) == ""


def test_fetch_pads_with_n_past_either_end(genome):
    assert genome.fetch("chr3", -3, 2) == "NNNGG"
    assert genome.fetch("chr3", 57, 63) == "GTANNN"
    assert genome.fetch("chr3", -2, 62) == "NN" + CHR3 + "NN"
    assert genome.fetch("chr3", -9, -4) == "NNNNN"  # wholly before the start
    assert genome.fetch("chr3", 70, 73) == "NNN"  # wholly past the end
    with pytest.raises(ValueError, match="start is after end"):
        genome.fetch("chr3", 5, 4)


def test_plus_window_past_chromosome_start(genome):
    # tss 10, L 24: [10 - 12, 10 + 12) = [-2, 22) -> "NN" + chr1[0:22]
    #   = NN + ccgtacgtta ggacTCAGCA AT
    window = genome.window("chr1", 10, "+", 24)
    assert window == "NNCCGTACGTTAGGACTCAGCAAT"
    assert window[12] == "G"  # chr1[10], the TSS, at index L/2


def test_minus_window_past_chromosome_end(genome):
    # tss 95, L 24: reverse complement of [95 - 12 + 1, 95 + 12 + 1) = [84, 108)
    #   = rc(chr2[84:100] + 8 N) = rc("CTGAACGTTTGC" "acgt" "NNNNNNNN")
    #   = "NNNNNNNN" + "ACGT" + "GCAAACGTTCAG"
    window = genome.window("chr2", 95, "-", 24)
    assert window == "NNNNNNNNACGTGCAAACGTTCAG"
    assert window[12] == "G"  # complement of chr2[95] = C, the TSS read on the minus strand


def test_odd_windows_are_symmetric_around_the_tss(genome):
    # L 5: both strands read [tss - 2, tss + 3); the TSS stays at index 5 // 2 = 2.
    assert genome.window("chr1", 10, "+", 5) == "TAGGA"  # chr1[8:13] = "ta" + "gga"
    assert genome.window("chr2", 95, "-", 5) == "GTGCA"  # rc(chr2[93:98]) = rc("TGC" + "ac")
    assert genome.window("chr2", 95, "-", 1) == "G"
    with pytest.raises(ValueError, match="strand"):
        genome.window("chr1", 10, ".", 5)


def test_window_interval_is_what_window_reads(genome):
    # L 24 (even): "+" [10 - 12, 10 + 12) = [-2, 22); "-" [95 - 12 + 1, 95 + 12 + 1) = [84, 108).
    assert window_interval(10, "+", 24) == (-2, 22)
    assert window_interval(95, "-", 24) == (84, 108)
    # L 5 (odd): both strands [tss - 2, tss + 3); L 1: the TSS alone.
    assert window_interval(10, "+", 5) == window_interval(10, "-", 5) == (8, 13)
    assert window_interval(95, "-", 1) == (95, 96)
    assert genome.window("chr2", 95, "-", 24) == reverse_complement(genome.fetch("chr2", 84, 108))
    with pytest.raises(ValueError, match="window length must be positive, got 0"):
        window_interval(10, "+", 0)
    with pytest.raises(ValueError, match="strand must be one of"):
        window_interval(10, ".", 5)


def test_windows_read_iupac_codes_as_n(genome):
    # chr3 has an IUPAC r at 9. Plus, tss 5, L 24: [-7, 17) = 7 N + chr3[0:17] with R -> N.
    assert genome.window("chr3", 5, "+", 24) == "NNNNNNNGGGCCACGTNCCTTAGT"
    # Minus, tss 9, L 4: rc(chr3[8:12]) = rc("TRCC") -> rc("TNCC") = "GGNA".
    assert genome.window("chr3", 9, "-", 4) == "GGNA"


def test_reverse_complement_handles_n_iupac_and_case():
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("RYKMSWBDHVN") == "NBDHVWSKMRY"  # R<->Y, K<->M, B<->V, D<->H
    assert reverse_complement("acgT") == "Acgt"
    with pytest.raises(ValueError, match="'\\*'"):
        reverse_complement("AC*T")


def test_missing_and_non_fasta_files_are_input_errors(tmp_path):
    with pytest.raises(InputFormatError, match="nope.fa: FASTA file not found"):
        Genome(tmp_path / "nope.fa")
    gtf = tmp_path / "annotation.gtf"
    shutil.copy(FILES / "annotation.gtf", gtf)
    with pytest.raises(InputFormatError, match="annotation.gtf: not a usable FASTA file"):
        Genome(gtf)
    ragged = tmp_path / "ragged.fa"
    ragged.write_text(">a\nACG\nACGTT\nA\n")
    with pytest.raises(InputFormatError, match="ragged.fa: not a usable FASTA file.*line"):
        Genome(ragged)


def test_bgzipped_fasta_reads_like_the_plain_one(tmp_path, genome):
    from Bio import bgzf

    packed = tmp_path / "packed.fa.gz"
    with bgzf.BgzfWriter(str(packed), "wb") as out:
        out.write((FILES / "genome.fa").read_bytes())
    with Genome(packed) as bgzipped:
        assert bgzipped.chroms == genome.chroms
        assert bgzipped.fetch("chr3", 0, 60) == CHR3
        assert bgzipped.window("chr1", 5, "-", 12) == genome.window("chr1", 5, "-", 12)


def test_plain_gzip_fasta_is_refused_with_a_hint(tmp_path):
    # pyfaidx reads only block-gzipped (bgzip) FASTA, not plain gzip.
    packed = tmp_path / "genome.fa.gz"
    with gzip.open(packed, "wb") as out:
        out.write((FILES / "genome.fa").read_bytes())
    with pytest.raises(InputFormatError, match="genome.fa.gz: .*(bgzip|[Bb]io[Pp]ython)"):
        Genome(packed)
