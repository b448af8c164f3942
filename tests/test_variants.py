"""variant_inputs on hand-built transcripts of both strands; every sequence is derived by hand.

chrP (60 bp), 0-based:
    0-9    ACGTTGCAAC            upstream (promoter)
    10-21  CCAATGGCTTGG          exon 1 of TXP: 5'UTR CCA, then ATG GCT TGG
    22-29  GTCCCTAG              intron
    30-47  AAACTGTGCTAAGCATAG    exon 2: AAA CTG TGC, stop TAA, 3'UTR GCATAG
    48-59  TTTGGGCCCAAA          downstream
TXP (+, TSS 10): rna = CCA | ATG GCT TGG AAA CTG TGC TAA | GCATAG (5'UTR 3, CDS 21, 3'UTR 6),
protein M A W K L C. Codon k (0-based) sits at rna 3 + 3k; codons 0-2 at genome 13-21, codons
3-6 at genome 30-41. TXN (+, no CDS) is one exon over genome 10-29.

chrM (46 bp): 0-5 TTTTCC, 6-17 CGTCATGGCCAG (exon B), 18-25 CTTACCAC (intron),
26-35 TCATGCATTC (exon A), 36-45 GGCATCAAGT (upstream of the minus-strand TXM).
TXM (-, TSS 35): rna = rc(exon A) + rc(exon B) = GAATGCATGA + CTGGCCATGACG
    = GA | ATG CAT GAC TGG CCA TGA | CG: protein M H D W P; codon GAC straddles the exon edge.
rna index i <-> genome 35 - i in exon A (i < 10), genome 27 - i in exon B (i >= 10).
VCF POS = genome position + 1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from isoformer.data.gencode import Transcript, transcript_sequences
from isoformer.data.genome import Genome, reverse_complement
from isoformer.data.variants import (
    CONSEQUENCES,
    TranscriptStructure,
    VariantEffectInputs,
    ref_matches,
    variant_inputs,
)
from isoformer.data.vcf import Variant
from isoformer.errors import IsoformerError

CHR_P = "ACGTTGCAAC" "CCAATGGCTTGG" "GTCCCTAG" "AAACTGTGCTAAGCATAG" "TTTGGGCCCAAA"
CHR_M = "TTTTCC" "CGTCATGGCCAG" "CTTACCAC" "TCATGCATTC" "GGCATCAAGT"
RNA_P = "CCAATGGCTTGG" "AAACTGTGCTAAGCATAG"
RNA_M = "GAATGCATGA" "CTGGCCATGACG"

TXP = TranscriptStructure(
    transcript_id="TXP", gene_id="GP", chrom="chrP", strand="+", exons=((10, 22), (30, 48)),
    tss=10, rna=RNA_P, protein="MAWKLC", utr5_length=3, cds_length=21, utr3_length=6,
    cds_phase=0,
)
TXN = TranscriptStructure(
    transcript_id="TXN", gene_id="GP", chrom="chrP", strand="+", exons=((10, 30),), tss=10,
    rna=CHR_P[10:30], protein="", utr5_length=0, cds_length=0, utr3_length=0, cds_phase=0,
)
TXM = TranscriptStructure(
    transcript_id="TXM", gene_id="GM", chrom="chrM", strand="-", exons=((6, 18), (26, 36)),
    tss=35, rna=RNA_M, protein="MHDWP", utr5_length=2, cds_length=18, utr3_length=2,
    cds_phase=0,
)
REF_WINDOW_P12 = "TGCAAC" "CCAATG"  # chrP[4:16], the TSS (genome 10) at index 6
REF_WINDOW_M12 = "GATGCC" "GAATGC"  # rc(chrM[30:42]) = rc(GCATTC GGCATC)


@pytest.fixture
def genome(tmp_path: Path):
    fasta = tmp_path / "genome.fa"
    fasta.write_text(f">chrP\n{CHR_P}\n>chrM\n{CHR_M}\n")
    with Genome(fasta) as opened:
        yield opened


def effect(genome, tx, pos, ref, alt, dna_length=12) -> VariantEffectInputs | None:
    return variant_inputs(Variant(tx.chrom, pos, ref, alt, line=1), tx, genome, dna_length)


def test_fixture_transcripts_are_what_build_would_store(genome):
    # The same exons and CDS through gencode (what `isoformer build` stores).
    plus = Transcript("TXP", "GP", "", "protein_coding", "chrP", "+", TXP.exons,
                      cds=((13, 22, 0), (30, 39, 0)), stop_codon=((39, 42),), line=1)
    minus = Transcript("TXM", "GM", "", "protein_coding", "chrM", "-", TXM.exons,
                       cds=((11, 18, 1), (26, 34, 0)), stop_codon=((8, 11),), line=1)
    for tx, structure in ((plus, TXP), (minus, TXM)):
        got = transcript_sequences(tx, genome)
        assert (got.rna, got.protein, got.utr5_length, got.cds_length, got.utr3_length,
                got.cds_phase) == (structure.rna, structure.protein, structure.utr5_length,
                                   structure.cds_length, structure.utr3_length, 0)


@pytest.mark.parametrize("length", [12, 13, 40])
def test_window_span_is_the_interval_genome_window_reads(genome, length):
    for tx in (TXP, TXM):
        start, end = tx.window_span(length)
        assert end - start == length
        forward = genome.fetch(tx.chrom, start, end)
        read = forward if tx.strand == "+" else reverse_complement(forward)
        assert genome.window(tx.chrom, tx.tss, tx.strand, length) == read
    assert TXP.window_span(12) == (4, 16) and TXM.window_span(12) == (30, 42)
    assert TXP.window_span(13) == (4, 17) and TXM.window_span(13) == (29, 42)
    assert TXP.span(12) == (4, 48) and TXM.span(12) == (6, 42) and TXM.span(100) == (-14, 86)


def test_from_row_and_datasets_without_structure(genome):
    row = {"transcript_id": "TXM", "gene_id": "GM", "chrom": "chrM", "strand": "-", "tss": 35,
           "rna": RNA_M, "protein": "MHDWP", "utr5_length": 2, "cds_length": 18,
           "utr3_length": 2, "exon_starts": [6, 26], "exon_ends": [18, 36], "cds_phase": 0}
    assert TranscriptStructure.from_row(row) == TXM
    old = {k: v for k, v in row.items() if k not in ("exon_starts", "exon_ends", "cds_phase")}
    with pytest.raises(IsoformerError, match="TXM: the dataset has no exon_starts, exon_ends, "
                       "cds_phase; rebuild it with `isoformer build`"):
        TranscriptStructure.from_row(old)


def test_consequences_are_in_vep_order():
    assert CONSEQUENCES[:5] == ("transcript_ablation", "stop_gained", "frameshift_variant",
                                "stop_lost", "start_lost")
    assert CONSEQUENCES[7:10] == ("missense_variant", "stop_retained_variant",
                                  "synonymous_variant")
    assert CONSEQUENCES[-2:] == ("upstream_gene_variant", "downstream_gene_variant")
    assert len(set(CONSEQUENCES)) == 16


def test_ref_matches(genome):
    assert ref_matches(Variant("chrP", 18, "C", "A", 1), genome)
    assert ref_matches(Variant("chrP", 30, "GAAA", "G", 1), genome)
    assert not ref_matches(Variant("chrP", 18, "G", "A", 1), genome)
    assert not ref_matches(Variant("chrP", 60, "AT", "A", 1), genome)  # runs past the end: N


def test_ref_equal_to_alt_is_refused(genome):
    # genome 4 (in the window [4, 16)) is T: T>T changes nothing; read_vcf skips such alleles.
    with pytest.raises(ValueError, match="chrP:5:T:T: REF equals ALT"):
        effect(genome, TXP, 5, "T", "T")


# ------------------------------------------------------------------------------- plus strand
def test_plus_missense(genome):
    # genome 17 C>A: codon 1 GCT -> GAT, A -> D; outside the 12-bp window [4, 16).
    got = effect(genome, TXP, 18, "C", "A")
    assert got == VariantEffectInputs(
        "missense_variant", "p.A2D", REF_WINDOW_P12,
        "CCAATGGATTGG" "AAACTGTGCTAAGCATAG", "MDWKLC", ("rna", "protein"),
    )
    # genome 17-19 CTT>AAC: GCT TGG -> GAA CGG, A W -> E R.
    two = effect(genome, TXP, 18, "CTT", "AAC")
    assert (two.consequence, two.protein_change, two.protein) == (
        "missense_variant", "p.A2_W3delinsER", "MERKLC")


def test_plus_synonymous(genome):
    # genome 35 G>A: codon 4 CTG -> CTA, both L.
    got = effect(genome, TXP, 36, "G", "A")
    assert (got.consequence, got.protein_change, got.protein) == (
        "synonymous_variant", "p.L5=", "MAWKLC")
    assert got.rna == "CCAATGGCTTGG" "AAACTATGCTAAGCATAG"
    assert got.modalities_changed == ("rna",)


def test_plus_stop_gained(genome):
    # genome 20 G>A: codon 2 TGG -> TAG.
    got = effect(genome, TXP, 21, "G", "A")
    assert (got.consequence, got.protein_change, got.protein) == ("stop_gained", "p.W3*", "MA")
    assert got.modalities_changed == ("rna", "protein")


def test_plus_stop_lost_translates_into_the_utr(genome):
    # genome 39 T>C: stop TAA -> CAA (Q); the 3'UTR reads GCA (A) TAG (stop), the 3rd codon
    # counting the former stop as 1.
    got = effect(genome, TXP, 40, "T", "C")
    assert (got.consequence, got.protein_change, got.protein) == (
        "stop_lost", "p.*7Qext*3", "MAWKLCQA")


def test_plus_stop_lost_without_a_new_stop(genome):
    # genome 39-41 TAA -> TTA (L) and the UTR also loses its TAG (genome 46 A>C): no new stop,
    # translated to the end of the RNA: TTA GCA TCG -> L A S.
    got = effect(genome, TXP, 40, "TAAGCATAG", "TTAGCATCG")
    assert (got.consequence, got.protein_change, got.protein) == (
        "stop_lost", "p.*7Lext*?", "MAWKLCLAS")


def test_stop_codon_deletion_with_a_stop_from_the_utr_is_an_inframe_deletion(genome):
    # genome 35-41 GTGCTAA>G deletes genome 36-41 = rna 18-23, codon 5 TGC and the stop TAA
    # (d = -2 residues): the RNA reads ... CTG GCA TAG, the 3'UTR's GCA (A) then TAG. The ALT
    # stop comes after A = 6 residues, within [P - 2, P] = [4, 6]: the stop is kept, and VEP's
    # most severe term is inframe_deletion. Compared up to the stops, C* became A*: p.C6A.
    got = effect(genome, TXP, 36, "GTGCTAA", "G")
    assert got == VariantEffectInputs(
        "inframe_deletion", "p.C6A", REF_WINDOW_P12, "CCAATGGCTTGG" "AAACTGGCATAG", "MAWKLA",
        ("rna", "protein"),
    )


def test_stop_retained_by_changes_that_keep_the_protein(genome):
    # TAA>TAG (genome 41 A>G): the stop stays a stop.
    snv = effect(genome, TXP, 42, "A", "G")
    assert (snv.consequence, snv.protein_change, snv.protein, snv.rna[21:24]) == (
        "stop_retained_variant", "p.*7=", "MAWKLC", "TAG")
    # genome 39-40 TA>T deletes one A of TAA (rna 22): TA + the 3'UTR's G = TAG, still a stop
    # right after C6. A length change of 1, but the protein and its stop are unchanged: no
    # frameshift.
    shifted = effect(genome, TXP, 40, "TA", "T")
    assert (shifted.consequence, shifted.protein_change, shifted.protein) == (
        "stop_retained_variant", "p.*7=", "MAWKLC")
    assert shifted.rna == "CCAATGGCTTGG" "AAACTGTGCTAGCATAG"
    assert shifted.modalities_changed == ("rna",)
    # genome 38-44 CTAAGCA>C deletes TAA GCA (rna 21-26): TGC then TAG, in frame, same protein.
    deleted = effect(genome, TXP, 39, "CTAAGCA", "C")
    assert (deleted.consequence, deleted.protein_change, deleted.rna[-6:]) == (
        "stop_retained_variant", "p.*7=", "TGCTAG")
    # Minus strand: rna 18 (the G of TGA) = genome 9 (C); C>T makes rna A: TGA -> TAA.
    minus = effect(genome, TXM, 10, "C", "T")
    assert (minus.consequence, minus.protein_change, minus.protein, minus.rna[17:20]) == (
        "stop_retained_variant", "p.*6=", "MHDWP", "TAA")


def test_stop_moved_by_changes_at_the_stop_codon(genome):
    # GCA inserted between codon 5 TGC and the stop (after genome 38): TGC GCA TAA, the stop
    # kept after A = 7 residues, within [P, P + 1] = [6, 7].
    before = effect(genome, TXP, 39, "C", "CGCA")
    assert (before.consequence, before.protein_change, before.protein) == (
        "inframe_insertion", "p.C6_*7insA", "MAWKLCA")
    # GCA inserted inside TAA (after genome 39): TGC TGC AAA GCA TAG -> C C K A, then the
    # 3'UTR's stop: A = 9 > 7, the stop is lost; the 4th codon counting the old stop as 1.
    inside = effect(genome, TXP, 40, "T", "TGCA")
    assert (inside.consequence, inside.protein_change, inside.protein) == (
        "stop_lost", "p.*7Cext*4", "MAWKLCCKA")
    # genome 36-41 TGC TAA -> GCC CAA (A Q), then GCA TAG: A = 8 > 6, and C6 changed too: C
    # replaced by AQA before the new stop.
    replaced = effect(genome, TXP, 37, "TGCTAA", "GCCCAA")
    assert (replaced.consequence, replaced.protein_change, replaced.protein) == (
        "stop_lost", "p.C6delinsAQA", "MAWKLAQA")
    # genome 36-40 TGCTA -> TGACA: TGC TAA -> TGA CAA, the stop one residue early (A = 5 < 6).
    early = effect(genome, TXP, 37, "TGCTA", "TGACA")
    assert (early.consequence, early.protein_change, early.protein) == (
        "stop_gained", "p.C6*", "MAWKL")


def test_deleting_every_exon_ablates_the_transcript(genome):
    # genome 8-47 (chrP[8:48]) > A deletes genome 9-47: both exons of TXP. The TSS (genome 10)
    # goes; the next base downstream, genome 48 (T), becomes it: ALT window = chrP[3:9] +
    # chrP[48:54] = TTGCAA TTTGGG.
    got = effect(genome, TXP, 9, CHR_P[8:48], "A")
    assert got == VariantEffectInputs(
        "transcript_ablation", "", "TTGCAA" "TTTGGG", "", "", ("dna", "rna", "protein"))
    # The same for the non-coding single exon [10, 30) of TXN: the new TSS is genome 30 (A),
    # ALT window chrP[3:9] + chrP[30:36] = TTGCAA AAACTG.
    non_coding = effect(genome, TXN, 9, CHR_P[8:30], "A")
    assert non_coding == VariantEffectInputs(
        "transcript_ablation", "", "TTGCAA" "AAACTG", "", "", ("dna", "rna"))


def test_plus_start_lost_inside_the_window(genome):
    # genome 14 T>C: ATG -> ACG; the protein is read from the same frame start: ACG GCT TGG AAA
    # CTG TGC TAA -> T A W K L C. Genome 14 is in the window [4, 16): index 10.
    got = effect(genome, TXP, 15, "T", "C")
    assert got == VariantEffectInputs(
        "start_lost", "p.M1?", "TGCAACCCAACG",
        "CCAACGGCTTGG" "AAACTGTGCTAAGCATAG", "TAWKLC", ("dna", "rna", "protein"),
    )


def test_plus_frameshift(genome):
    # genome 30-31 AA>A deletes rna 12: ATG GCT TGG AAC TGT GCT AAG CAT AG -> M A W N C A K H,
    # no stop before the RNA ends; the first residue that differs is K4.
    got = effect(genome, TXP, 31, "AA", "A")
    assert (got.consequence, got.protein_change, got.protein) == (
        "frameshift_variant", "p.K4fs", "MAWNCAKH")
    assert got.rna == "CCAATGGCTTGG" "AACTGTGCTAAGCATAG"


def test_plus_inframe_deletion_anchored_in_the_intron(genome):
    # genome 29-32 GAAA>G: the anchor G is the intron's last base; codon 3 AAA (K) goes.
    got = effect(genome, TXP, 30, "GAAA", "G")
    assert (got.consequence, got.protein_change, got.protein) == (
        "inframe_deletion", "p.K4del", "MAWLC")
    assert got.rna == "CCAATGGCTTGG" "CTGTGCTAAGCATAG"
    two = effect(genome, TXP, 30, "GAAACTG", "G")  # AAA CTG: K L
    assert (two.consequence, two.protein_change, two.protein) == (
        "inframe_deletion", "p.K4_L5del", "MAWC")


def test_plus_inframe_insertion(genome):
    # genome 32 A>AGGC: GGC (G) between codon 3 AAA and codon 4 CTG.
    got = effect(genome, TXP, 33, "A", "AGGC")
    assert (got.consequence, got.protein_change, got.protein) == (
        "inframe_insertion", "p.K4_L5insG", "MAWKGLC")
    assert got.rna == "CCAATGGCTTGG" "AAAGGCCTGTGCTAAGCATAG"


def test_plus_deletion_across_an_exon_edge_removes_only_exonic_bases(genome):
    # genome 19-23 TGGGT>T deletes genome 20-23: exon 1's last two bases GG (rna 10-11) and the
    # intron's first two GT. ATG GCT T|AA -> M A, stop: a frameshift at W3.
    got = effect(genome, TXP, 20, "TGGGT", "T")
    assert (got.consequence, got.protein_change, got.protein) == (
        "frameshift_variant", "p.W3fs", "MA")
    assert got.rna == "CCAATGGCTT" "AAACTGTGCTAAGCATAG"


def test_plus_utrs(genome):
    five = effect(genome, TXP, 12, "C", "G")  # genome 11 = rna 1, also window index 7
    assert five == VariantEffectInputs(
        "5_prime_UTR_variant", "", "TGCAACCGAATG",
        "CGAATGGCTTGG" "AAACTGTGCTAAGCATAG", "MAWKLC", ("dna", "rna"),
    )
    three = effect(genome, TXP, 45, "A", "T")  # genome 44 = rna 26, in GCATAG
    assert (three.consequence, three.protein_change, three.modalities_changed) == (
        "3_prime_UTR_variant", "", ("rna",))
    assert three.rna == "CCAATGGCTTGG" "AAACTGTGCTAAGCTTAG"


def test_intron_and_non_coding_exon_at_a_chromosome_edge(genome):
    # 40 bp windows: [10 - 20, 10 + 20) = [-10, 30), ten Ns before the chromosome start.
    # genome 25 C>A is intronic for TXP and exonic for the single-exon, non-coding TXN.
    alt_window = "N" * 10 + "ACGTTGCAAC" "CCAATGGCTTGG" "GTCACTAG"
    intron = effect(genome, TXP, 26, "C", "A", dna_length=40)
    assert intron == VariantEffectInputs(
        "intron_variant", "", alt_window, RNA_P, "MAWKLC", ("dna",))
    exon = effect(genome, TXN, 26, "C", "A", dna_length=40)
    assert exon == VariantEffectInputs(
        "non_coding_transcript_exon_variant", "", alt_window,
        "CCAATGGCTTGG" "GTCACTAG", "", ("dna", "rna"),
    )


def test_upstream_downstream_and_outside_every_window(genome):
    upstream = effect(genome, TXP, 6, "G", "C")  # genome 5 = window index 1
    assert upstream == VariantEffectInputs(
        "upstream_gene_variant", "", "TCCAACCCAATG", RNA_P, "MAWKLC", ("dna",))
    # A 100 bp window [-40, 60) reaches past the transcript end (48): genome 50 T>G.
    downstream = effect(genome, TXP, 51, "T", "G", dna_length=100)
    assert downstream.consequence == "downstream_gene_variant"
    assert downstream.dna == "N" * 40 + CHR_P[:50] + "G" + CHR_P[51:]
    assert effect(genome, TXP, 56, "C", "A") is None  # 12 bp window [4, 16), not exonic
    assert effect(genome, TXP, 26, "C", "A") is None  # intronic but outside the window
    assert variant_inputs(Variant("chrP", 26, "C", "A", 1), TXM, genome, 12) is None


def test_plus_indels_keep_the_window_length_with_the_tss_at_the_centre(genome):
    # Insertion of GG after genome 7: ACGTTGCA GG AC | CCAATG..., the TSS (genome 10) at index
    # 6: the 6 bases before it are CAGGAC.
    inserted = effect(genome, TXP, 8, "A", "AGG")
    assert inserted.dna == "CAGGAC" "CCAATG"
    assert (inserted.consequence, inserted.modalities_changed) == (
        "upstream_gene_variant", ("dna",))
    # Deletion of genome 6-7 (CA): ACGTTG AC | CCAATG: two more bases come from beyond.
    assert effect(genome, TXP, 6, "GCA", "G").dna == "GTTGAC" "CCAATG"
    # 24 bp window [-2, 22) at the chromosome start; deleting genome 4-5 (TG) pulls in Ns.
    deleted = effect(genome, TXP, 4, "TTG", "T", dna_length=24)
    assert deleted.dna == "NNNN" "ACGTCAAC" "CCAATGGCTTGG"


def test_a_deleted_tss_moves_to_the_next_base_downstream(genome):
    # Deleting genome 9-10 (C, and the TSS C): the first remaining base downstream, genome 11
    # (C), becomes the TSS; upstream of it ACGTTGCAA.
    got = effect(genome, TXP, 9, "ACC", "A")
    assert got.dna == "TTGCAA" "CAATGG"
    assert (got.consequence, got.protein) == ("5_prime_UTR_variant", "MAWKLC")
    assert got.rna == "CAATGGCTTGG" "AAACTGTGCTAAGCATAG"


def test_plus_tss_edits_keep_the_tss_in_place(genome):
    # Same-length change of genome 9-10 (C and the TSS C) to GT: no shift, window [4, 16).
    mnv = effect(genome, TXP, 10, "CC", "GT")
    assert mnv.dna == "TGCAAG" "TCAATG" and mnv.rna[:2] == "TC"
    # An insertion right before the TSS base (between genome 9 and 10) is upstream of the
    # transcript: ACGTTGCAAC A | CCAATG.
    before = effect(genome, TXP, 10, "C", "CA")
    assert before == VariantEffectInputs(
        "upstream_gene_variant", "", "GCAACA" "CCAATG", RNA_P, "MAWKLC", ("dna",))


def test_plus_deletion_from_the_5utr_into_the_start_codon(genome):
    # genome 12-15 (UTR A, then ATG) deleted: the frame starts where the ALT does, rna 2:
    # GCT TGG AAA CTG TGC TAA -> A W K L C; 3 translated bases lost, but the start is gone.
    got = effect(genome, TXP, 12, "CAATG", "C")
    assert got == VariantEffectInputs(
        "start_lost", "p.M1?", "TGCAAC" "CCGCTT",
        "CC" "GCTTGG" "AAACTGTGCTAAGCATAG", "AWKLC", ("dna", "rna", "protein"),
    )
    # A substitution across the same edge (genome 12-13 AA>CC) leaves the frame in place: CTG GCT
    # TGG AAA CTG TGC -> L A W K L C, no frameshift.
    mnv = effect(genome, TXP, 13, "AA", "CC")
    assert (mnv.consequence, mnv.protein, mnv.rna[:6]) == ("start_lost", "LAWKLC", "CCCCTG")


def test_cds_start_nf_phase_bases_and_no_start_codon(genome):
    # TXP read as a cds_start_NF CDS from rna 1 with phase 2: the frame still starts at rna 3.
    tx = dataclasses.replace(TXP, utr5_length=1, cds_length=23, cds_phase=2)
    skipped = effect(genome, tx, 12, "C", "G")  # rna 1, a phase-skipped base
    assert (skipped.consequence, skipped.protein_change, skipped.protein) == (
        "synonymous_variant", "", "MAWKLC")
    first_codon = effect(genome, tx, 15, "T", "C")  # ATG -> ACG, but no annotated start
    assert (first_codon.consequence, first_codon.protein_change) == ("missense_variant", "p.M1T")


# ------------------------------------------------------------------------------ minus strand
def test_minus_missense_in_the_second_coding_exon(genome):
    # rna 13 (codon 3 TGG, in exon B) = genome 27 - 13 = 14, C on the forward strand: C>A
    # makes rna T: TGG -> TGT, W -> C.
    got = effect(genome, TXM, 15, "C", "A")
    assert got == VariantEffectInputs(
        "missense_variant", "p.W4C", REF_WINDOW_M12,
        "GAATGCATGA" "CTGTCCATGACG", "MHDCP", ("rna", "protein"),
    )


def test_minus_stop_gained_and_synonymous(genome):
    # rna 12 = genome 15 (C): C>T makes rna A: TGG -> TAG.
    stop = effect(genome, TXM, 16, "C", "T")
    assert (stop.consequence, stop.protein_change, stop.protein) == (
        "stop_gained", "p.W4*", "MHD")
    assert stop.rna == "GAATGCATGA" "CTAGCCATGACG"
    # rna 16 = genome 11 (T): T>C makes rna G: CCA -> CCG, both P.
    same = effect(genome, TXM, 12, "T", "C")
    assert (same.consequence, same.protein_change, same.protein) == (
        "synonymous_variant", "p.P5=", "MHDWP")
    assert same.rna == "GAATGCATGA" "CTGGCCGTGACG"


def test_minus_frameshift_in_the_first_exon(genome):
    # genome 28-29 AT>A deletes genome 29 = rna 35 - 29 = 6, the A of CAT:
    # ATG CTG ACT GGC CAT GAC G -> M L T G H D, no stop.
    got = effect(genome, TXM, 29, "AT", "A")
    assert (got.consequence, got.protein_change, got.protein) == (
        "frameshift_variant", "p.H2fs", "MLTGHD")
    assert got.rna == "GAATGC" "TGACTGGCCATGACG"


def test_minus_utrs_start_lost_and_stop_lost(genome):
    # rna 0 = genome 35 (C): C>G makes rna C, in the 5'UTR; also the window's TSS base.
    five = effect(genome, TXM, 36, "C", "G")
    assert (five.consequence, five.dna, five.rna[:3]) == (
        "5_prime_UTR_variant", "GATGCCCAATGC", "CAA")
    # rna 3 (the T of ATG) = genome 32 (A): A>C makes rna G: ATG -> AGG.
    start = effect(genome, TXM, 33, "A", "C")
    assert (start.consequence, start.protein_change, start.protein) == (
        "start_lost", "p.M1?", "RHDWP")
    # rna 18 (the G of TGA) = genome 9 (C): C>A makes rna T: TGA -> TTA (L), then CG: no stop.
    stop = effect(genome, TXM, 10, "C", "A")
    assert (stop.consequence, stop.protein_change, stop.protein) == (
        "stop_lost", "p.*6Lext*?", "MHDWPL")
    # rna 21 = genome 6 (C): C>T makes rna A, in the 3'UTR.
    assert effect(genome, TXM, 7, "C", "T").rna == RNA_M[:-1] + "A"
    assert effect(genome, TXM, 7, "C", "T").consequence == "3_prime_UTR_variant"


def test_minus_deleted_tss_moves_to_the_next_base_downstream(genome):
    # Deleting genome 35-36 (the TSS C and the G upstream of it on "-"): the new TSS is genome
    # 34 (T). Forward ALT window: chrM[29:35] TGCATT + chrM[37:43] GCATCA, reverse complemented.
    got = effect(genome, TXM, 35, "TCG", "T")
    assert got.dna == "TGATGC" "AATGCA"
    assert (got.consequence, got.rna) == ("5_prime_UTR_variant", RNA_M[1:])


def test_minus_upstream_deletion_keeps_the_window_length(genome):
    # Deleting genome 38-39 (CA), upstream of TXM: the forward window [30, 42) of the ALT
    # haplotype is GCATTC GG TCAA, reverse complemented TTGACC GAATGC (the TSS G at index 6).
    got = effect(genome, TXM, 38, "GCA", "G")
    assert got == VariantEffectInputs(
        "upstream_gene_variant", "", "TTGACC" "GAATGC", RNA_M, "MHDWP", ("dna",))
    # GCC inserted between genome 30 and 31, downstream of the TSS on "-": rna GGC (G) between
    # codons ATG and CAT (rna index 5). Forward ALT haplotype TCATG GCC CATT | C | GGCATC: the
    # 5 bases before the TSS are CCATT, so the window is rc(CCATTCGGCATC) = GATGCC GAATGG.
    inserted = effect(genome, TXM, 31, "G", "GGCC")
    assert inserted == VariantEffectInputs(
        "inframe_insertion", "p.M1_H2insG", "GATGCC" "GAATGG",
        "GAATG" "GGC" "CATGACTGGCCATGACG", "MGHDWP", ("dna", "rna", "protein"),
    )
