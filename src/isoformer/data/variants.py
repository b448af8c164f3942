"""One variant applied to one transcript's three model inputs: the DNA window, the RNA, the protein.

Coordinates are 0-based half-open genome positions, as in the dataset (schema.py).

Alleles: the VCF's REF and ALT lose their common prefix (an indel's anchor base, which VCF puts
first), then their common suffix, so a change replaces genome `[start, end)` by `alt`; an
insertion has start == end and lies between bases start - 1 and start. REF == ALT changes
nothing and is refused (ValueError): `read_vcf` skips and counts such alleles.

Where a change acts: in the DNA window when it intersects `window_span` (an insertion: strictly
inside it); exonic when it intersects an exon (an insertion: strictly inside one exon, so one at an
exon edge is intronic, or outside the transcript at its ends). `variant_inputs` is None when
neither holds.

(a) DNA: the ALT haplotype, re-cut to the same length with the TSS at index L // 2, 5'->3' on the
    transcript's strand (reverse complement on "-"); bases a deletion removes are filled from the
    genome beyond, N past a chromosome end. An indel upstream of the TSS (on the transcript's
    strand) shifts the upstream bases, one downstream shifts the downstream ones. When the change
    replaces the TSS base itself with an ALT of another length, the new TSS is the ALT's 5'-most
    base on the strand, or with an empty ALT the first remaining base downstream of the deletion.
(b) RNA: the exonic part of REF (through the exon structure, strand-aware) is replaced by ALT
    (reverse complemented on "-"). Across an exon edge (splicing is not modelled): a substitution
    changes its exonic bases only, a deletion removes its exonic bases, and a change of another
    length puts its whole ALT in place of the exonic REF bases. A deletion of every exonic base
    leaves an empty RNA and protein.
(c) Protein (coding consequences only): residues before the first changed codon are kept, then
    the altered RNA is translated from the same frame start (`utr5_length + cds_phase`) up to
    the first stop, or to the end of the RNA when none comes (stop lost, frameshift). When a
    change from the 5'UTR deletes the frame's first base, the frame starts right after its ALT
    (ALT aligned to REF from the left). An in-frame change that neither holds the stop codon nor
    makes a stop re-translates only its codons, the rest of the protein stays as stored.
    Re-translation uses the standard code, so an annotated Selenocysteine UGA after a frameshift
    reads as a stop.

Consequence: the most severe (CONSEQUENCES order, VEP's) of those that apply:
- not exonic: intron_variant inside the transcript span, else upstream_gene_variant when 5' of
  the transcript on its strand, downstream_gene_variant when 3';
- every exonic base deleted: transcript_ablation, with empty RNA, protein and protein_change;
  no model reads an empty RNA, so the scoring side (analysis/variant_effect.py) skips such rows
  and counts them;
- exonic on a transcript without CDS: non_coding_transcript_exon_variant;
- exonic, entirely before the CDS / after it: 5_prime_UTR_variant / 3_prime_UTR_variant (an
  insertion at the CDS edge is outside it); in the phase-skipped bases of a cds_start_NF CDS,
  before the translated frame: synonymous_variant with no protein_change;
- touching the CDS, compared over the changed codons: frameshift_variant (length change within
  the translated frame not a multiple of 3), stop_gained (a stop among the new codons, none in
  the old), stop_lost (the reverse), start_lost (the first codon was ATG at phase 0 and is no
  longer), inframe_insertion / inframe_deletion, missense_variant (other residues),
  stop_retained_variant (the changed codons hold the stop, which stays), synonymous_variant. A
  length change that leaves the protein and its stop as they were (it acts past the last
  residue, a stop reading right there) is neither a frameshift nor an in-frame indel;
- changed codons that hold the stop (P = len(protein) residues before it) are compared up to
  the stops, the ALT read on into the 3'UTR to its first stop, after A residues. The stop is
  kept, as VEP has it, where it stays in place: P + min(0, d) <= A <= P + max(0, d), d the
  residues an in-frame change adds (negative: removes); earlier is stop_gained, later or no stop
  stop_lost. On ...L5 C6 * (TGC TAA, 3'UTR GCA TAG): TAA>TAG stop_retained_variant p.*7=; TGC
  TAA deleted (d = -2; ALT ...GCA TAG, A = 6): inframe_deletion (VEP's most severe, the stop
  retained) p.C6A; TAA>TA (TAG): stop_retained_variant p.*7=; TAA>CAA stop_lost p.*7Qext*3.

protein_change, one-letter residues, 1-based positions in the reference protein:
    p.C12Y          missense, one residue       p.C12_K13delinsWQ  several residues replaced
    p.W5*           stop gained at residue 5    p.L7=              synonymous (first changed codon)
    p.K5fs          frameshift, first residue that differs from the reference
    p.*101Qext*4    stop lost: residue 101 (the former stop) reads Q, the new stop is the 4th
                    codon counting the former stop codon as 1; `ext*?` when no stop comes
    p.C6_*7delinsAQ, p.C6delinsAQR   stop lost, residues before it changed too: they and the
                    stop replaced (no new stop), or they alone (a new stop after R)
    p.M1?           start lost                  p.*101=            stop retained
    p.K5del, p.K5_L7del   in-frame deletion     p.K5_L6insG        in-frame insertion between
                                                                   residues 5 and 6
"" for non-coding consequences and transcript_ablation. Changed residues are located within the
changed codons (up to the stops at the stop codon), not shifted to the 3'-most copy of a repeat
as HGVS would. As in VEP and HGVS, the consequence describes the coding sequence and
protein_change the protein (inframe_deletion p.C6A above).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from isoformer.constants import MODALITIES
from isoformer.data.gencode import TranscriptCoordinates, translate
from isoformer.data.genome import (
    Genome,
    mask_non_acgtn,
    reverse_complement,
    window_interval,
)
from isoformer.data.schema import STRUCTURE_COLUMNS
from isoformer.data.vcf import Variant
from isoformer.errors import IsoformerError

CONSEQUENCES: tuple[str, ...] = (
    "transcript_ablation",
    "stop_gained",
    "frameshift_variant",
    "stop_lost",
    "start_lost",
    "inframe_insertion",
    "inframe_deletion",
    "missense_variant",
    "stop_retained_variant",
    "synonymous_variant",
    "5_prime_UTR_variant",
    "3_prime_UTR_variant",
    "non_coding_transcript_exon_variant",
    "intron_variant",
    "upstream_gene_variant",
    "downstream_gene_variant",
)


@dataclass(frozen=True)
class TranscriptStructure:
    transcript_id: str
    gene_id: str
    chrom: str
    strand: str  # "+" | "-"
    exons: tuple[tuple[int, int], ...]  # genome order, 0-based half-open
    tss: int
    rna: str
    protein: str
    utr5_length: int
    cds_length: int
    utr3_length: int
    cds_phase: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TranscriptStructure:
        """From a transcripts.parquet row; datasets built before the structure columns fail."""
        missing = [column for column in STRUCTURE_COLUMNS if row.get(column) is None]
        if missing:
            raise IsoformerError(
                f"transcript {row.get('transcript_id')}: the dataset has no {', '.join(missing)}; "
                "rebuild it with `isoformer build` for variant effects"
            )
        return cls(
            transcript_id=row["transcript_id"],
            gene_id=row["gene_id"],
            chrom=row["chrom"],
            strand=row["strand"],
            exons=tuple(zip(map(int, row["exon_starts"]), map(int, row["exon_ends"]), strict=True)),
            tss=int(row["tss"]),
            rna=row["rna"],
            protein=row["protein"],
            utr5_length=int(row["utr5_length"]),
            cds_length=int(row["cds_length"]),
            utr3_length=int(row["utr3_length"]),
            cds_phase=int(row["cds_phase"]),
        )

    @property
    def start(self) -> int:
        return self.exons[0][0]

    @property
    def end(self) -> int:
        return self.exons[-1][1]

    @property
    def frame_start(self) -> int:
        """RNA index of the first translated base."""
        return self.utr5_length + self.cds_phase

    def window_span(self, dna_length: int) -> tuple[int, int]:
        """The genome interval `Genome.window(chrom, tss, strand, dna_length)` reads."""
        return window_interval(self.tss, self.strand, dna_length)

    def span(self, dna_length: int) -> tuple[int, int]:
        """Hull of the DNA window and the exons: where a variant can matter."""
        window_start, window_end = self.window_span(dna_length)
        return min(window_start, self.start), max(window_end, self.end)


@dataclass(frozen=True)
class VariantEffectInputs:
    consequence: str  # one of CONSEQUENCES
    protein_change: str  # e.g. "p.C12Y", "p.W5*", "p.L7=", "p.K5fs"; "" where none
    dna: str  # the ALT DNA window (== the reference window if untouched)
    rna: str  # the ALT spliced RNA (== tx.rna if untouched)
    protein: str  # the ALT protein (== tx.protein if untouched)
    modalities_changed: tuple[str, ...]  # subset of ("dna", "rna", "protein"), in that order


@dataclass(frozen=True)
class _Change:
    """Genome `[start, end)` (empty: an insertion before `start`) replaced by `alt`."""

    start: int
    end: int
    alt: str

    def touches(self, start: int, end: int) -> bool:
        if self.start == self.end:
            return start < self.start < end
        return self.start < end and start < self.end


def ref_matches(variant: Variant, genome: Genome) -> bool:
    """REF equals the genome (case-insensitive); IsoformerError when the chromosome is absent."""
    return genome.fetch(variant.chrom, variant.start, variant.end) == variant.ref.upper()


def variant_inputs(
    variant: Variant, tx: TranscriptStructure, genome: Genome, dna_length: int
) -> VariantEffectInputs | None:
    """None when the variant touches neither tx's DNA window (at dna_length) nor its exons."""
    if variant.chrom != tx.chrom:
        return None
    change = _normalise(variant)
    in_window = change.touches(*tx.window_span(dna_length))
    rna_edit = _exonic_edit(change, tx)
    if not in_window and rna_edit is None:
        return None
    reference_dna = genome.window(tx.chrom, tx.tss, tx.strand, dna_length)
    dna = _alt_window(change, tx, genome, dna_length) if in_window else reference_dna
    rna, protein, consequence, protein_change = tx.rna, tx.protein, _outside_exons(change, tx), ""
    if rna_edit is not None:
        start, end, piece = rna_edit
        rna = tx.rna[:start] + piece + tx.rna[end:]
        consequence, protein, protein_change = _exonic_effect(tx, start, end, rna)
    changed = tuple(
        modality
        for modality, alt, ref in zip(
            MODALITIES, (dna, rna, protein), (reference_dna, tx.rna, tx.protein), strict=True
        )
        if alt != ref
    )
    return VariantEffectInputs(consequence, protein_change, dna, rna, protein, changed)


def _normalise(variant: Variant) -> _Change:
    ref, alt, start = variant.ref, variant.alt, variant.start
    if ref == alt:
        raise ValueError(f"{variant.variant_id}: REF equals ALT, no change to apply")
    # Prefix first: trimming GAAACTG>G from the right would keep the anchor G.
    while ref and alt and ref[0] == alt[0]:
        ref, alt, start = ref[1:], alt[1:], start + 1
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    return _Change(start, start + len(ref), alt)


def _exonic_edit(change: _Change, tx: TranscriptStructure) -> tuple[int, int, str] | None:
    """RNA `[start, end)` that the change's exonic part replaces (contiguous: the intronic parts
    are spliced out) and what replaces it, 5'->3'; None when no exon is touched."""
    to_rna = TranscriptCoordinates(tx.exons, tx.strand)
    spans, alt = [], change.alt
    substitution = len(change.alt) == change.end - change.start
    for exon_start, exon_end in tx.exons:
        if change.touches(exon_start, exon_end):
            lo, hi = max(exon_start, change.start), min(exon_end, change.end)
            spans.append((to_rna(lo, hi), change.alt[lo - change.start : hi - change.start]))
    if not spans:
        return None
    if substitution:  # only the ALT bases at exonic positions
        alt = "".join(piece for _, piece in spans)
    starts, ends = zip(*(span for span, _ in spans), strict=True)
    return min(starts), max(ends), alt if tx.strand == "+" else reverse_complement(alt)


def _outside_exons(change: _Change, tx: TranscriptStructure) -> str:
    if change.touches(tx.start, tx.end):
        return "intron_variant"
    before = change.end <= tx.start  # genome order
    return "upstream_gene_variant" if before == (tx.strand == "+") else "downstream_gene_variant"


def _alt_window(change: _Change, tx: TranscriptStructure, genome: Genome, length: int) -> str:
    window_start, window_end = tx.window_span(length)
    pad = change.end - change.start  # a deletion pulls in at most this many bases on either side
    origin = window_start - pad
    reference = genome.fetch(tx.chrom, origin, window_end + pad)
    haplotype = reference[: change.start - origin] + change.alt + reference[change.end - origin :]
    first, last = window_interval(_alt_tss(change, tx) - origin, tx.strand, length)
    forward = mask_non_acgtn(haplotype[first:last])[0]
    return forward if tx.strand == "+" else reverse_complement(forward)


def _alt_tss(change: _Change, tx: TranscriptStructure) -> int:
    """The TSS's genome-forward position on the ALT haplotype (same origin as the genome)."""
    shift = len(change.alt) - (change.end - change.start)
    if tx.tss < change.start:
        return tx.tss
    if tx.tss >= change.end:
        return tx.tss + shift
    if shift == 0:  # a substitution of the TSS base keeps its place
        return tx.tss
    # The TSS base is replaced: the ALT's 5'-most base on the strand, or the next one downstream.
    return change.start if tx.strand == "+" else change.start + len(change.alt) - 1


def _exonic_effect(
    tx: TranscriptStructure, start: int, end: int, rna: str
) -> tuple[str, str, str]:
    """(consequence, ALT protein, protein_change) of RNA `[start, end)` edited into `rna`."""
    if not rna:  # every exonic base deleted
        return "transcript_ablation", "", ""
    if tx.cds_length == 0:
        return "non_coding_transcript_exon_variant", tx.protein, ""
    if end <= tx.utr5_length:  # an insertion (start == end) at the CDS edge included
        return "5_prime_UTR_variant", tx.protein, ""
    if start >= tx.utr5_length + tx.cds_length:
        return "3_prime_UTR_variant", tx.protein, ""
    if end <= tx.frame_start:  # in the bases a cds_start_NF phase skips
        return "synonymous_variant", tx.protein, ""
    return _coding_effect(tx, start, end, rna)


def _coding_effect(
    tx: TranscriptStructure, start: int, end: int, rna: str
) -> tuple[str, str, str]:
    frame = tx.frame_start
    shift = len(rna) - len(tx.rna)
    # The frame start through a change that begins before it, ALT aligned to REF from the left:
    # in place, unless a shorter ALT removes it; then the frame starts right after the ALT.
    alt_frame = frame if start >= frame else start + min(frame - start, end - start + shift)
    first = max(0, (start - frame) // 3)  # first changed codon (0-based)
    # Codons first..last (exclusive) hold the change; an insertion, inside codon `first` or just
    # before it, takes that codon along (the residue comparison trims what stays the same).
    last = first + 1 if start == end else -(-(end - frame) // 3)
    frame_shift = shift + frame - alt_frame  # bases gained by the translated region
    ref_peptide = translate(tx.rna[frame + 3 * first : frame + 3 * last])
    alt_peptide = translate(rna[alt_frame + 3 * first : frame + 3 * last + shift])
    in_frame = frame_shift % 3 == 0
    had_start = tx.cds_phase == 0 and tx.rna[frame : frame + 3] == "ATG"
    start_lost = had_start and rna[alt_frame : alt_frame + 3] != "ATG"
    stop = len(tx.protein)  # the reference stop codon's index among the codons
    at_stop = "*" in ref_peptide and first <= stop < last

    stopped = True
    if not in_frame or start_lost or "*" in ref_peptide + alt_peptide:
        tail, stopped = _translate_to_stop(rna[alt_frame + 3 * first :])
        protein = tx.protein[:first] + tail
    else:  # the stop is untouched: only the changed codons are re-translated
        protein = tx.protein[:first] + alt_peptide + tx.protein[last:]
    if at_stop:  # compared up to the stops: a deletion can bring one in from the 3'UTR
        ref_peptide = tx.protein[first:] + "*"
        alt_peptide = protein[first:] + ("*" if stopped else "")
        # The stop is kept where it comes within the residues an in-frame change adds or removes.
        low, high = stop + min(0, frame_shift // 3), stop + max(0, frame_shift // 3)
        gained, lost = stopped and len(protein) < low, not stopped or len(protein) > high
    else:
        gained = "*" in alt_peptide and "*" not in ref_peptide
        lost = "*" in ref_peptide and "*" not in alt_peptide
    # A length change past the last residue, with a stop right there, leaves the protein as is.
    reframed = not (stopped and protein == tx.protein)
    applying = {
        "stop_gained": in_frame and gained,
        "frameshift_variant": not in_frame and reframed,
        "stop_lost": in_frame and lost,
        "start_lost": start_lost,
        "inframe_insertion": in_frame and frame_shift > 0 and reframed,
        "inframe_deletion": in_frame and frame_shift < 0 and reframed,
        "missense_variant": ref_peptide != alt_peptide,
        "stop_retained_variant": at_stop,
        "synonymous_variant": True,
    }
    consequence = next(term for term in CONSEQUENCES if applying.get(term))
    change = _protein_change(consequence, tx.protein, first, ref_peptide, alt_peptide, protein,
                             stopped)
    return consequence, protein, change


def _translate_to_stop(coding: str) -> tuple[str, bool]:
    """Residues up to the first stop (excluded), and whether a stop came."""
    residues = translate(coding)
    stop = residues.find("*")
    return (residues[:stop], True) if stop >= 0 else (residues, False)


def _protein_change(
    consequence: str, protein: str, first: int, ref_peptide: str, alt_peptide: str,
    alt_protein: str, stopped: bool,
) -> str:
    """HGVS-like p. notation (formats in the module docstring)."""
    if consequence == "start_lost":
        return f"p.{_residue(protein, 0)}1?"
    if consequence == "stop_gained":
        return f"p.{_residue(protein, len(alt_protein))}{len(alt_protein) + 1}*"
    if consequence == "frameshift_variant":
        at = _common_prefix(protein + "*", alt_protein + ("*" if stopped else ""))
        return f"p.{_residue(protein, at)}{at + 1}fs"
    if consequence == "stop_lost" and alt_protein.startswith(protein):  # the stop reads on
        extension = alt_protein[len(protein) :]
        new_stop = len(extension) + 1 if stopped else "?"
        return f"p.*{len(protein) + 1}{extension[:1] or '?'}ext*{new_stop}"
    if consequence == "stop_retained_variant":
        return f"p.*{len(protein) + 1}="
    if consequence == "synonymous_variant":
        return f"p.{_residue(protein, first)}{first + 1}="
    return _residue_change(protein, first, ref_peptide, alt_peptide)


def _residue_change(protein: str, first: int, ref_peptide: str, alt_peptide: str) -> str:
    """Missense, in-frame deletion, insertion or delins between the changed codons' peptides."""
    head = _common_prefix(ref_peptide, alt_peptide)
    tail = _common_prefix(ref_peptide[head:][::-1], alt_peptide[head:][::-1])
    removed = ref_peptide[head : len(ref_peptide) - tail]
    added = alt_peptide[head : len(alt_peptide) - tail]
    at = first + head  # 0-based index of the first changed residue
    if not removed:
        return f"p.{_residue(protein, at - 1)}{at}_{_residue(protein, at)}{at + 1}ins{added}"
    where = f"{removed[0]}{at + 1}"
    if len(removed) > 1:
        where += f"_{removed[-1]}{at + len(removed)}"
    if not added:
        return f"p.{where}del"
    return f"p.{where}{added}" if len(removed) == len(added) == 1 else f"p.{where}delins{added}"


def _residue(protein: str, index: int) -> str:
    """Residue `index` (0-based) of the reference; the stop just after it reads '*'."""
    return protein[index] if 0 <= index < len(protein) else "*"


def _common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
