"""GTF reading and transcript sequences, pinned on tests/files/{genome.fa,annotation.gtf}.

The fixture genome was written from these 0-based pieces (lower case = soft-masked):
  chr1: [0,10) ccgtacgtta | exon 1 [10,30) ggacTCAGCA ATGGCCTGGA
        | intron [30,50) GTAAGTCCTTGACCTTGCAG | exon 2 [50,80) ACGATTGCCATGAAAAGCTGATCTTCCCGA
        | intron [80,100) GTATGTaaaaaaaaacctag
        | exon 3 [100,115) GCTAC TAA gcattca | [115,130) GGTTNNNNNNNNACG
  chr2: [0,33) ACGTACGTAC NNNNNNNNNN TTGACCAGTTGAC | exon 3 [33,40) ttcaggT
        | intron [40,51) CTAAAGGATAC
        | exon 2 [51,70) CAAACCCATTGAATAAGTC | intron [70,84) CTTACCCGGTTTAC
        | exon 1 [84,96) CTGAACGTTTGC | [96,100) acgt
  chr3: GGGCC | exon 1 [5,15) ACGTrCCTTA | GTNNNNNNAG | exon 2 [25,35) TTGGCCAATT
        | CCCCCAAAAAGGGGGTTTTTACGTA
Exon numbers on chr2 are in transcript order (minus strand: exon 1 has the highest coordinates).
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import shutil
from pathlib import Path

import pytest

from isoformer.data.gencode import (
    Transcript,
    TranscriptSequences,
    UnusableCdsError,
    read_gtf,
    transcript_sequences,
    translate,
)
from isoformer.data.genome import Genome
from isoformer.errors import InputFormatError

FILES = Path(__file__).parent / "files"
GTF = FILES / "annotation.gtf"
PLUS, RETAINED, MINUS, LINC = (
    "ENST00000000001.1",
    "ENST00000000002.1",
    "ENST00000000003.2",
    "ENST00000000004.1",
)


@pytest.fixture(scope="module")
def transcripts() -> dict[str, Transcript]:
    return read_gtf(GTF).transcripts


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    fasta = tmp_path_factory.mktemp("genome") / "genome.fa"
    shutil.copy(FILES / "genome.fa", fasta)
    with Genome(fasta) as genome:
        yield genome


def sequences(tx: Transcript, genome: Genome) -> TranscriptSequences:
    return transcript_sequences(tx, genome, GTF)


# ------------------------------------------------------------------------------------ read_gtf
def test_read_gtf_keeps_file_order_and_counts_transcripts_without_exons():
    result = read_gtf(GTF)
    assert list(result.transcripts) == [PLUS, RETAINED, MINUS, LINC]
    # 33 lines - 3 "##" header lines = 30 feature rows; ENST00000000009.1 has only a transcript row.
    assert result.counts == {"feature_rows": 30, "transcripts": 4, "skipped_no_exons": 1}


def test_plus_transcript_rows_become_sorted_0_based_intervals(transcripts):
    tx = transcripts[PLUS]
    assert (tx.gene_id, tx.gene_name, tx.transcript_type) == (
        "ENSG00000000001.1",
        "GENEP",
        "protein_coding",
    )
    assert (tx.chrom, tx.strand, tx.line) == ("chr1", "+", 5)
    # GTF exons 11-30, 51-80, 101-115 -> [10,30), [50,80), [100,115)
    assert tx.exons == ((10, 30), (50, 80), (100, 115))
    assert tx.cds == ((20, 30, 0), (50, 80, 2), (100, 105, 2))
    assert tx.stop_codon == ((105, 108),)
    assert (tx.start, tx.end, tx.tss) == (10, 115, 10)


def test_minus_transcript_rows_are_sorted_by_genome_position(transcripts):
    tx = transcripts[MINUS]
    # The GTF lists exons 85-96, 52-70, 34-40 (transcript order); stored in genome order.
    assert tx.exons == ((33, 40), (51, 70), (84, 96))
    assert tx.cds == ((53, 70, 2), (84, 96, 2))
    assert tx.stop_codon == ((39, 40), (51, 53))  # split by the intron: 1 + 2 bases
    assert (tx.start, tx.end, tx.tss, tx.line) == (33, 96, 95, 19)


def test_gzipped_gtf_reads_the_same(tmp_path, transcripts):
    packed = tmp_path / "annotation.gtf.gz"
    packed.write_bytes(gzip.compress(GTF.read_bytes()))
    assert read_gtf(packed).transcripts == transcripts


def test_exon_only_gtf_takes_attributes_and_line_from_the_first_row(tmp_path):
    lines = GTF.read_text().splitlines(keepends=True)
    no_transcript_rows = tmp_path / "exons.gtf"
    no_transcript_rows.write_text("".join(line for line in lines if "\ttranscript\t" not in line))
    result = read_gtf(no_transcript_rows)
    tx = result.transcripts[PLUS]
    assert (tx.line, tx.gene_name, tx.transcript_type) == (
        5,
        "GENEP",
        "protein_coding",
    )  # old line 6
    assert result.counts["transcripts"] == 4 and "skipped_no_exons" not in result.counts


# Fixture line 8 is the plus transcript's first CDS row:
#   chr1 HAVANA CDS 21 30 . + 0 gene_id "ENSG00000000001.1"; transcript_id "ENST00000000001.1"; ...
@pytest.mark.parametrize(
    ("old", "new", "line", "problem"),
    [
        ("\t.\t+\t0\t", "\t+\t0\t", 8, "expected 9 tab-separated fields, found 8"),
        ("\t.\t+\t0\t", "\t.\t*\t0\t", 8, "unknown strand '*' on a CDS row"),
        ("\t21\t30\t", "\t21\tthirty\t", 8, "start/end must be integers, found '21' and 'thirty'"),
        ("\t21\t30\t", "\t30\t21\t", 8, "bad coordinates 30..21"),
        ("\t21\t30\t", "\t0\t30\t", 8, "bad coordinates 0..30"),
        ('transcript_id "ENST00000000001.1"; ', "", 8, "CDS row without a transcript_id attribute"),
        ("\t.\t+\t0\t", "\t.\t+\t3\t", 8, "CDS phase must be 0, 1 or 2, found '3'"),
        ("\t.\t+\t0\t", "\t.\t+\t.\t", 8, "CDS phase must be 0, 1 or 2, found '.'"),
        (
            "chr1\tHAVANA\tCDS",
            "chr2\tHAVANA\tCDS",
            8,
            "ENST00000000001.1 is on chr2 + here but on chr1 + at line 5",
        ),
    ],
)
def test_malformed_gtf_line_names_file_line_and_problem(tmp_path, old, new, line, problem):
    lines = GTF.read_text().splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    bad = tmp_path / "bad.gtf"
    bad.write_text("".join(lines))
    with pytest.raises(InputFormatError) as caught:
        read_gtf(bad)
    assert str(caught.value).startswith(f"{bad}:{line}: {problem}")


@pytest.mark.parametrize(
    ("line", "old", "new", "problem"),
    [
        (8, 'gene_id "ENSG00000000001.1"; ', "", "CDS row of ENST00000000001.1 without a gene_id"),
        (
            16,
            "ENST00000000002.1",
            "ENST00000000001.1",
            "second transcript row for ENST00000000001.1",
        ),
    ],
)
def test_transcript_level_inconsistencies(tmp_path, line, old, new, problem):
    lines = GTF.read_text().splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace(old, new)
    if line == 8:  # make the CDS row the transcript's first row, where gene_id is read
        lines.insert(4, lines.pop(line - 1))
        line = 5
    bad = tmp_path / "bad.gtf"
    bad.write_text("".join(lines))
    with pytest.raises(InputFormatError, match=re.escape(f"{bad}:{line}: {problem}")):
        read_gtf(bad)


def test_overlapping_exons_and_missing_file(tmp_path):
    lines = GTF.read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace("\t51\t80\t", "\t25\t80\t")  # exon 2 now overlaps exon 1 (11-30)
    bad = tmp_path / "bad.gtf"
    bad.write_text("".join(lines))
    with pytest.raises(
        InputFormatError, match=re.escape(f"{bad}:5: ENST00000000001.1 has overlapping")
    ):
        read_gtf(bad)
    with pytest.raises(InputFormatError, match="missing.gtf: GTF file not found"):
        read_gtf(tmp_path / "missing.gtf")


def test_unknown_strand_on_a_gene_row_is_an_error(tmp_path):
    lines = GTF.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace("\t+\t.\t", "\tplus\t.\t")  # line 4: the chr1 gene row
    bad = tmp_path / "bad.gtf"
    bad.write_text("".join(lines))
    with pytest.raises(InputFormatError, match=re.escape(f"{bad}:4: unknown strand 'plus'")):
        read_gtf(bad)


def test_binary_file_is_not_a_gtf(tmp_path):
    bad = tmp_path / "genome.gtf"
    bad.write_bytes(b"\x00\xff\xfe" * 10)
    with pytest.raises(InputFormatError, match="genome.gtf: not a readable GTF"):
        read_gtf(bad)


# -------------------------------------------------------------------------- transcript_sequences
def test_plus_coding_transcript_with_cds_split_across_three_exons(transcripts, genome):
    # rna = chr1[10:30] + chr1[50:80] + chr1[100:115], upper case:
    #   GGACTCAGCA | ATGGCCTGGA | ACGATTGCCATGAAAAGCTGATCTTCCCGA | GCTAC TAA | GCATTCA
    #   5'UTR 10   | CDS 10 + 30 + 5 = 45 (15 codons) + stop TAA = 48       | 3'UTR 7
    # ATG GCC TGG AAC GAT TGC CAT GAA AAG CTG ATC TTC CCG AGC TAC = M A W N D C H E K L I F P S Y
    assert sequences(transcripts[PLUS], genome) == TranscriptSequences(
        rna="GGACTCAGCAATGGCCTGGAACGATTGCCATGAAAAGCTGATCTTCCCGAGCTACTAAGCATTCA",
        protein="MAWNDCHEKLIFPSY",
        utr5_length=10,
        cds_length=48,
        utr3_length=7,
        non_acgtn=0,
    )


def test_minus_coding_transcript_with_phase_2_and_a_split_stop_codon(transcripts, genome):
    # exons in transcript order, each the reverse complement of its genome piece:
    #   exon 1 rc(CTGAACGTTTGC) = GCAAACGTTCAG          (CDS, phase 2: skip "GC")
    #   exon 2 rc(CAAACCCATTGAATAAGTC) = GACTTATTCAATGGGTT TG   (CDS 17 + stop "TG")
    #   exon 3 rc(ttcaggT) = A CCTGAA                   (stop "A" + 3'UTR 6)
    # CDS after phase: AAA CGT TCA GGA CTT ATT CAA TGG GTT = K R S G L I Q W V, stop TGA
    # lengths: 5'UTR 0 (cds_start_NF), CDS 12 + 17 + 3 = 32 (phase bases included), 3'UTR 6
    assert sequences(transcripts[MINUS], genome) == TranscriptSequences(
        rna="GCAAACGTTCAGGACTTATTCAATGGGTTTGACCTGAA",
        protein="KRSGLIQWV",
        utr5_length=0,
        cds_length=32,
        utr3_length=6,
        non_acgtn=0,
        cds_phase=2,
    )


def test_non_coding_transcripts(transcripts, genome):
    # chr1[10:60) upper-cased; no CDS: no protein, no UTRs.
    assert sequences(transcripts[RETAINED], genome) == TranscriptSequences(
        rna="GGACTCAGCAATGGCCTGGAGTAAGTCCTTGACCTTGCAGACGATTGCCA",
        protein="",
        utr5_length=0,
        cds_length=0,
        utr3_length=0,
        non_acgtn=0,
    )
    # chr3[5:15) + chr3[25:35) = ACGTrCCTTA + TTGGCCAATT; the IUPAC r is counted and reads N.
    assert sequences(transcripts[LINC], genome) == TranscriptSequences(
        rna="ACGTNCCTTATTGGCCAATT",
        protein="",
        utr5_length=0,
        cds_length=0,
        utr3_length=0,
        non_acgtn=1,
    )


def test_incomplete_cds_end_drops_the_partial_codon(transcripts, genome):
    # cds_end_NF: last CDS row [100,104) and no stop_codon row. CDS = rna[10:54), 44 bases:
    # 14 codons (M..S) + "TA" not translated; cds_length 44, 3'UTR = 65 - 54 = 11.
    tx = dataclasses.replace(
        transcripts[PLUS], cds=((20, 30, 0), (50, 80, 2), (100, 104, 2)), stop_codon=()
    )
    got = sequences(tx, genome)
    assert (got.protein, got.utr5_length, got.cds_length, got.utr3_length) == (
        "MAWNDCHEKLIFPS",
        10,
        44,
        11,
    )


# The plus transcript read one base later (first phase 1; later rows then have phase 0):
# rna[11:55) = TGG CCT GGA ACG ATT GCC ATG AAA AGC TGA TCT TCC CGA GCT | AC
#            -> W P G T I A M K S * S S R A
SHIFTED_CDS = ((20, 30, 1), (50, 80, 0), (100, 105, 0))


def test_internal_stop_is_an_unusable_cds(transcripts, genome):
    tx = dataclasses.replace(transcripts[PLUS], cds=SHIFTED_CDS)
    with pytest.raises(UnusableCdsError) as caught:
        sequences(tx, genome)
    assert caught.value.reason == "internal_stop"
    assert (
        str(caught.value)
        == f"{GTF}:5: transcript {PLUS}: internal stop codon at amino acid 10 of 14"
    )


def test_selenocysteine_row_reads_u(transcripts, genome):
    # Codon 10 (TGA) starts at rna 11 + 27 = 38 = exon 2 offset 18 -> genome [68, 71).
    tx = dataclasses.replace(transcripts[PLUS], cds=SHIFTED_CDS, selenocysteine=((68, 71),))
    assert sequences(tx, genome).protein == "WPGTIAMKSUSSRA"


def test_phase_that_breaks_the_frame_is_an_unusable_cds(transcripts, genome):
    # After the 10-base first row, the second row must have phase (0 - 10) % 3 = 2.
    tx = dataclasses.replace(transcripts[PLUS], cds=((20, 30, 0), (50, 80, 0), (100, 105, 2)))
    with pytest.raises(
        UnusableCdsError,
        match="CDS phase 0 at transcript base 21 breaks the reading frame "
        r"\(expected 2\)",
    ) as caught:
        sequences(tx, genome)
    assert caught.value.reason == "phase_mismatch"


@pytest.mark.parametrize("cds", [((20, 22, 0),), ((20, 24, 2),)])
def test_cds_shorter_than_a_codon_after_phase_is_an_unusable_cds(transcripts, genome, cds):
    tx = dataclasses.replace(transcripts[PLUS], cds=cds, stop_codon=())
    with pytest.raises(
        UnusableCdsError, match=re.escape(f"{GTF}:5: transcript {PLUS}: CDS has 2 bases")
    ):
        sequences(tx, genome)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"chrom": "chrX"}, "chromosome 'chrX' is not in FASTA"),
        ({"cds": ((20, 35, 0),)}, "CDS 21..35 is not inside one exon"),
        ({"stop_codon": ((115, 118),)}, "stop_codon 116..118 is not inside one exon"),
        # second CDS row from genome 55: rna 25, leaving rna bases 21..25 (1-based) uncovered
        (
            {"cds": ((20, 30, 0), (55, 80, 1), (100, 105, 2))},
            "CDS/stop_codon rows leave a gap at transcript bases 21..25",
        ),
        ({"exons": ((10, 30), (120, 135))}, "exons end at 135, past the end of chr1 (130 bp"),
    ],
)
def test_structural_cds_and_chromosome_errors_name_gtf_line_and_transcript(
    transcripts, genome, change, problem
):
    tx = dataclasses.replace(transcripts[PLUS], **change)
    with pytest.raises(InputFormatError) as caught:
        sequences(tx, genome)
    assert not isinstance(caught.value, UnusableCdsError)
    assert str(caught.value).startswith(f"{GTF}:5: transcript {PLUS}: {problem}")


def test_translate_standard_code():
    assert translate("ATGTGGTAATAGTGACCNTT") == "MW***X"  # CCN is ambiguous: X; "TT" is not a codon
    assert translate("TTTTTATCTTATTGTTGG") == "FLSYCW"
