"""Simulated genome and GENCODE annotation: genes placed on chromosomes, FASTA and GTF writers.

Chromosomes hold designed gene loci on both strands, separated by intergenic stretches with
soft-masked repeat copies and N runs. The first gene of the first chromosome starts at base 0
and the last gene of the last chromosome (minus strand) ends at the chromosome end, so their
TSS-centred windows run past the chromosome and need N padding. Soft-masked (lower-case)
stretches also fall on genes: every reader must upper-case.

GTF rows follow GENCODE v26: gene, transcript, then per exon in transcript order its exon, CDS,
start_codon / stop_codon rows, UTR rows last; CDS rows exclude the stop codon and carry the
phase (bases to skip to the next codon start); IDs are versioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isoformer.data.genome import reverse_complement
from isoformer.data.simulate_genes import UPSTREAM, GeneDesign, TranscriptDesign, random_bases

FASTA_LINE = 60
_REPEAT_LENGTH = 300
_SOURCE = "HAVANA"


@dataclass
class PlacedGene:
    gene: GeneDesign
    gene_id: str
    gene_name: str
    chrom: str
    strand: str
    offset: int  # genome position of locus[0] on "+", of locus[-1] on "-"
    transcript_ids: list[str]

    def to_genome(self, start: int, end: int) -> tuple[int, int]:
        """Locus interval [start, end) -> 0-based half-open genome interval."""
        if self.strand == "+":
            return self.offset + start, self.offset + end
        last = self.offset + len(self.gene.locus)
        return last - end, last - start

    def tss(self, transcript: TranscriptDesign) -> int:
        first = self.to_genome(*transcript.exons[0])
        return first[0] if self.strand == "+" else first[1] - 1


def _versioned(prefix: str, number: int, rng: np.random.Generator) -> str:
    return f"{prefix}{number:011d}.{int(rng.integers(1, 6))}"


def _mutated_repeat(rng: np.random.Generator, consensus: str) -> str:
    """A copy of a repeat family: 10% substitutions, lower case (soft-masked)."""
    bases = np.frombuffer(consensus.encode(), dtype=np.uint8).copy()
    hits = rng.random(len(bases)) < 0.1
    bases[hits] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, int(hits.sum()))]
    return bases.tobytes().decode().lower()


def _intergenic(rng: np.random.Generator, repeats: list[str]) -> str:
    """1.5-3.5 kb between loci: random bases, a repeat copy, sometimes an N run in the middle."""
    left = random_bases(rng, int(rng.integers(500, 1200)))
    right = random_bases(rng, int(rng.integers(500, 1200)))
    middle = _mutated_repeat(rng, repeats[int(rng.integers(len(repeats)))])
    if rng.random() < 0.3:
        middle += "N" * int(rng.integers(100, 1000))
    return left + middle + right


def _soft_mask(rng: np.random.Generator, sequence: str) -> str:
    """Lower-cases random 50-400 bp stretches (about 3% of bases), N left upper case."""
    bases = bytearray(sequence.encode("ascii"))
    for _ in range(len(bases) // 5000):
        start = int(rng.integers(0, len(bases)))
        for i in range(start, min(start + int(rng.integers(50, 400)), len(bases))):
            if bases[i] != ord("N"):
                bases[i] |= 0x20
    return bases.decode("ascii")


def place_genes(
    rng: np.random.Generator, genes: list[GeneDesign], n_chromosomes: int
) -> tuple[dict[str, str], list[PlacedGene]]:
    """Chromosome sequences (name -> bases) and the genes on them, in genome order."""
    repeats = [random_bases(rng, _REPEAT_LENGTH) for _ in range(3)]
    names = [f"chr{i + 1}" for i in range(n_chromosomes - 1)] + ["chrX"]
    per_chrom = np.array_split(np.arange(len(genes)), n_chromosomes)
    chromosomes: dict[str, str] = {}
    placed: list[PlacedGene] = []
    transcript_number = 0
    for c, (name, indices) in enumerate(zip(names, per_chrom)):
        pieces, length = [], 0
        for k, g in enumerate(indices):
            first_gene, last_gene = (
                c == 0 and k == 0,
                c == n_chromosomes - 1 and k == len(indices) - 1,
            )
            if not first_gene:
                gap = _intergenic(rng, repeats)
                pieces.append(gap)
                length += len(gap)
            strand = (
                "+" if first_gene else "-" if last_gene else ("+" if rng.random() < 0.5 else "-")
            )
            gene = genes[g]
            gene_number = len(placed) + 1
            ids = []
            for _ in gene.transcripts:
                transcript_number += 1
                ids.append(_versioned("ENST", transcript_number, rng))
            prefix = "SIM" if gene.kind == "protein_coding" else "LINC"
            placed.append(
                PlacedGene(
                    gene=gene,
                    gene_id=_versioned("ENSG", gene_number, rng),
                    gene_name=f"{prefix}{gene_number}",
                    chrom=name,
                    strand=strand,
                    offset=length,
                    transcript_ids=ids,
                )
            )
            pieces.append(gene.locus if strand == "+" else reverse_complement(gene.locus))
            length += len(gene.locus)
        if c < n_chromosomes - 1:
            pieces.append(_intergenic(rng, repeats))
        chromosomes[name] = _soft_mask(rng, "".join(pieces))
    # A sequence without genes, as assemblies have (unplaced contigs).
    chromosomes["chrUn_sim1"] = _soft_mask(rng, random_bases(rng, 5000))
    return chromosomes, placed


def write_fasta(path: Path, chromosomes: dict[str, str]) -> None:
    with open(path, "w", encoding="ascii") as out:
        for name, sequence in chromosomes.items():
            out.write(f">{name}\n")
            out.writelines(
                sequence[i : i + FASTA_LINE] + "\n" for i in range(0, len(sequence), FASTA_LINE)
            )


def _attributes(pairs: list[tuple[str, str | int]]) -> str:
    return " ".join(
        f"{key} {value};" if isinstance(value, int) else f'{key} "{value}";' for key, value in pairs
    )


def _row(
    g: PlacedGene,
    feature: str,
    span: tuple[int, int],
    phase: str,
    attributes: list[tuple[str, str | int]],
) -> str:
    start, end = g.to_genome(*span)
    return "\t".join(
        [
            g.chrom,
            _SOURCE,
            feature,
            str(start + 1),
            str(end),
            ".",
            g.strand,
            phase,
            _attributes(attributes),
        ]
    )


def _clip(exon: tuple[int, int], lo: int, hi: int) -> tuple[int, int] | None:
    start, end = max(exon[0], lo), min(exon[1], hi)
    return (start, end) if start < end else None


def gene_rows(
    g: PlacedGene, exon_ids: dict[tuple[int, int], str], protein_ids: list[str]
) -> list[str]:
    """GTF lines of one gene; exon_ids maps each locus exon span to its versioned ENSE id."""
    gene = g.gene
    base = [("gene_id", g.gene_id)]
    named = [("gene_type", gene.kind), ("gene_name", g.gene_name)]
    span = (
        min(t.exons[0][0] for t in gene.transcripts),
        max(t.exons[-1][1] for t in gene.transcripts),
    )
    rows = [_row(g, "gene", span, ".", [*base, *named, ("level", 2)])]
    for j, (transcript, transcript_id) in enumerate(zip(gene.transcripts, g.transcript_ids)):
        tx = [
            *base,
            ("transcript_id", transcript_id),
            *named,
            ("transcript_type", transcript.transcript_type),
            ("transcript_name", f"{g.gene_name}-{201 + j}"),
        ]
        tags = [("tag", tag) for tag in transcript.tags]
        rows.append(
            _row(
                g,
                "transcript",
                (transcript.exons[0][0], transcript.exons[-1][1]),
                ".",
                [*tx, ("level", 2), ("transcript_support_level", "1"), *tags],
            )
        )
        utr_rows = []
        coded = 0  # CDS bases so far, for the phase
        for number, exon in enumerate(transcript.exons, start=1):
            exon_attributes = [
                *tx,
                ("exon_number", number),
                ("exon_id", exon_ids[exon]),
                ("level", 2),
            ]
            rows.append(_row(g, "exon", exon, ".", [*exon_attributes, *tags]))
            if transcript.cds is None:
                continue
            atg, stop_end = transcript.cds
            coding_attributes = [*exon_attributes, ("protein_id", protein_ids[j]), *tags]
            cds = _clip(exon, atg, stop_end - 3)
            if cds:
                rows.append(_row(g, "CDS", cds, str((3 - coded % 3) % 3), coding_attributes))
                coded += cds[1] - cds[0]
            for feature, codon in (
                ("start_codon", (atg, atg + 3)),
                ("stop_codon", (stop_end - 3, stop_end)),
            ):
                part = _clip(exon, *codon)
                if part:
                    # A codon split by an intron: the second part's phase counts bases before it.
                    rows.append(
                        _row(
                            g, feature, part, str((3 - (part[0] - codon[0])) % 3), coding_attributes
                        )
                    )
            for utr in (_clip(exon, exon[0], atg), _clip(exon, stop_end, exon[1])):
                if utr:
                    utr_rows.append(_row(g, "UTR", utr, ".", coding_attributes))
        rows.extend(utr_rows)
    return rows


def write_gtf(path: Path, placed: list[PlacedGene], rng: np.random.Generator) -> None:
    """GENCODE-style GTF of all placed genes, with shared exons sharing one ENSE id."""
    exon_number = protein_number = 0
    with open(path, "w", encoding="ascii") as out:
        out.write(
            "##description: simulated study, GENCODE v26 conventions\n"
            "##provider: isoformer simulate\n##format: gtf\n"
        )
        for g in placed:
            exon_ids = {}
            for transcript in g.gene.transcripts:
                for exon in transcript.exons:
                    if exon not in exon_ids:
                        exon_number += 1
                        exon_ids[exon] = _versioned("ENSE", exon_number, rng)
            protein_ids = []
            for transcript in g.gene.transcripts:
                protein_number += transcript.cds is not None
                protein_ids.append(
                    _versioned("ENSP", protein_number, rng) if transcript.cds else ""
                )
            out.writelines(row + "\n" for row in gene_rows(g, exon_ids, protein_ids))


def near_edge_genes(placed: list[PlacedGene], chromosomes: dict[str, str]) -> list[str]:
    """Genes with a TSS within UPSTREAM + 200 bp of a chromosome end (windows need padding)."""
    near = []
    for g in placed:
        length = len(chromosomes[g.chrom])
        for transcript in g.gene.transcripts:
            tss = g.tss(transcript)
            if min(tss, length - 1 - tss) <= UPSTREAM + 200:
                near.append(g.gene_id)
                break
    return near
