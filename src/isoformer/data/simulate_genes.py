"""Simulated genes: exon-intron structure, isoforms, coding sequences and planted motifs.

A gene is designed 5'->3' in its own orientation as a locus string (promoter flank, exons,
introns, a short downstream flank); `simulate_genome` later places it on either strand. Layout:

    upstream(400, promoter of TSS1) F1 | intron [promoter of TSS2, F2 | intron] E1 | intron
    X1 | ... | L1 [| intron L2] downstream

F1/F2 are alternative first exons (5'UTR only), E1 holds the start codon, X are internal exons
(constitutive or frame-preserving cassettes), L1/L2 alternative last exons (end of the CDS,
stop, 3'UTR with RNA motifs). Introns next to a TSS are >= 1 kb, so a 1,024 bp TSS window sees
its promoter and first exon only. Every boundary a cassette or a last exon touches lies between
codons, so every isoform keeps one reading frame. Each coding part draws its own residue
composition (charge, hydrophobic share; cysteine-rich genes are a protein class), so isoforms of
one gene differ in their protein features.

Introns (and the stretch between alternative first exons) also receive the background motif
grammar (`BackgroundPlanter`, `rule_family.BackgroundFamily`), planted from its own random stream
over the bases the gene's stream drew, so gene structures and every other draw stay the same.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from isoformer.data.expression_model import ExpressionRules
from isoformer.data.gencode import CODON_TABLE, translate
from isoformer.data.genome import reverse_complement
from isoformer.data.rule_family import BackgroundGrammar, RuleFamily
from isoformer.errors import IsoformerError

UPSTREAM = 400  # locus bases before TSS1
DOWNSTREAM = 100
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_STOPS = ("TAA", "TAG", "TGA")
_CODONS: dict[str, list[str]] = {}
for _codon, _residue in sorted(CODON_TABLE.items()):
    _CODONS.setdefault(_residue, []).append(_codon)
_RESIDUES = np.array(sorted(r for r in _CODONS if r != "*"))
_CHARGED_SHARE = 0.25  # of residues: K, R, D, E
_HYDROPHOBIC = "AILMFVW"
_CYSTEINE_SHARE = {True: 0.1, False: 0.015}  # cysteine-rich class or not


def random_bases(rng: np.random.Generator, n: int) -> str:
    return _BASES[rng.integers(0, 4, n)].tobytes().decode("ascii")


def _composition(rng: np.random.Generator, cysteine_rich: bool) -> np.ndarray:
    """Residue probabilities [20] (order of _RESIDUES) of one coding part: a drawn share of K/R
    among the charged residues and of hydrophobic ones among the rest."""
    positive = rng.uniform(0.05, 0.95)
    hydrophobic = rng.uniform(0.25, 0.65)
    cysteine = _CYSTEINE_SHARE[cysteine_rich]
    rest = 1.0 - _CHARGED_SHARE - cysteine
    weights = {}
    others = [r for r in _RESIDUES if r not in "KRDEC" and r not in _HYDROPHOBIC]
    for r in _RESIDUES:
        if r in "KR":
            weights[r] = _CHARGED_SHARE * positive / 2
        elif r in "DE":
            weights[r] = _CHARGED_SHARE * (1 - positive) / 2
        elif r == "C":
            weights[r] = cysteine
        elif r in _HYDROPHOBIC:
            weights[r] = rest * hydrophobic / len(_HYDROPHOBIC)
        else:
            weights[r] = rest * (1 - hydrophobic) / len(others)
    probabilities = np.array([weights.get(r, 0.0) for r in _RESIDUES])
    return probabilities / probabilities.sum()


def _random_codons(rng: np.random.Generator, n: int, composition: np.ndarray) -> str:
    """n sense codons with residues drawn from `composition`, synonymous codons uniformly."""
    residues = rng.choice(_RESIDUES, n, p=composition)
    return "".join(_CODONS[r][rng.integers(len(_CODONS[r]))] for r in residues)


def _copies(rng: np.random.Generator, mean: float, at_most: int = 3) -> int:
    return min(int(rng.poisson(mean)), at_most)


def _plant(rng: np.random.Generator, motifs: list[str], length: int) -> str:
    """`length` random bases with `motifs` planted in random order, in disjoint equal slots."""
    motifs = [motifs[i] for i in rng.permutation(len(motifs))]
    if not motifs:
        return random_bases(rng, length)
    slot = length // len(motifs)
    if slot < max(map(len, motifs)):
        raise IsoformerError(
            f"rules: {len(motifs)} motif copies (up to {max(map(len, motifs))} bp) do not fit in "
            f"{length} bp; plant fewer copies (copies_mean) or widen the region"
        )
    pieces = []
    for motif in motifs:
        offset = int(rng.integers(0, slot - len(motif) + 1))
        pieces.append(
            random_bases(rng, offset) + motif + random_bases(rng, slot - offset - len(motif))
        )
    pieces.append(random_bases(rng, length - slot * len(motifs)))
    return "".join(pieces)


class BackgroundPlanter:
    """Plants the background grammar's sites into stretches of sequence, from its own stream.

    `plant` draws a Poisson count of sites (`motif_rate` per kb of each stretch) and writes each
    site, in a random orientation, at a random position where every base it covers is upper-case
    A/C/G/T (no N run, repeat copy or soft-masked stretch), not already planted, and at least
    `margin` bases from the stretch's ends; a site overlapping an occurrence of a `protect`ed
    sequence (a motif the gene's own stream planted) is moved too. A site finds a place in 10
    tries or is dropped. `sites` counts the planted elements by name, `dropped` the others.
    """

    TRIES = 10

    def __init__(self, grammar: BackgroundGrammar, rng: np.random.Generator):
        self.grammar, self.rng = grammar, rng
        self.sites: Counter[str] = Counter()
        self.by_region: Counter[str] = Counter()  # intronic / intergenic sites
        self.dropped = 0
        self.searched_bases = 0  # length of the stretches sites were drawn for

    def plant(self, sequence: str, region: str, margin: int = 20,
              protect: tuple[str, ...] = ()) -> str:
        """`sequence` with sites planted anywhere in it (see the class docstring)."""
        return self.plant_intervals(sequence, [(0, len(sequence))], region, margin, protect)

    def plant_intervals(
        self, sequence: str, intervals: list[tuple[int, int]], region: str, margin: int = 20,
        protect: tuple[str, ...] = (),
    ) -> str:
        """`sequence` with sites planted in each [start, end) of `intervals`."""
        if self.grammar.motif_rate <= 0 or not self.grammar.motifs:
            return sequence
        bases = bytearray(sequence.encode("ascii"))
        taken = np.zeros(len(bases), dtype=bool)
        guarded = [p.encode("ascii") for p in protect]
        rng = self.rng
        for start, end in intervals:
            self.searched_bases += max(end - start, 0)
            n_sites = int(rng.poisson(self.grammar.motif_rate * max(end - start, 0) / 1000))
            for _ in range(n_sites):
                name, parts = self.grammar.draw_site(rng)
                site = "".join(p if isinstance(p, str) else random_bases(rng, p) for p in parts)
                if rng.random() < 0.5:
                    site = reverse_complement(site)
                at = self._free_position(bases, taken, guarded, start + margin, end - margin,
                                         len(site))
                if at is None:
                    self.dropped += 1
                    continue
                bases[at : at + len(site)] = site.encode("ascii")
                taken[at : at + len(site)] = True
                self.sites[name] += 1
                self.by_region[region] += 1
        return bases.decode("ascii")

    def _free_position(self, bases: bytearray, taken: np.ndarray, guarded: list[bytes],
                       low: int, high: int, length: int) -> int | None:
        """A start in [low, high - length] where a site of `length` may go, or None."""
        if high - low < length:
            return None
        for _ in range(self.TRIES):
            at = int(self.rng.integers(low, high - length + 1))
            if bytes(bases[at : at + length]).translate(None, b"ACGT"):
                continue  # N, lower case (a repeat copy, a soft-masked stretch)
            if taken[at : at + length].any():
                continue
            if any(g in bases[max(at - len(g) + 1, 0) : at + length + len(g) - 1]
                   for g in guarded):
                continue
            return at
        return None

    def counts(self) -> dict:
        """What was planted, for truth.json."""
        return {
            "sites": dict(sorted(self.sites.items())),
            "by_region": dict(sorted(self.by_region.items())),
            "dropped": self.dropped,
            "searched_bases": self.searched_bases,
        }


@dataclass
class GeneDesign:
    """One gene in its own orientation; coordinates are 0-based half-open within `locus`."""

    kind: str  # "protein_coding" or "lncRNA"
    locus: str
    transcripts: list[TranscriptDesign] = field(default_factory=list)
    planted_promoters: list[dict[str, int]] = field(default_factory=list)  # copies, per TSS


@dataclass
class TranscriptDesign:
    transcript_type: str
    exons: list[tuple[int, int]]  # in transcript (= locus) order
    cds: tuple[int, int] | None = None  # [first base of ATG, last base of the stop codon + 1)
    protein: str = ""
    rna: str = ""
    tags: tuple[str, ...] = ()
    first_exon: int = 0  # which TSS (index into GeneDesign.planted_promoters)


class _LocusBuilder:
    """Appends pieces to a locus and remembers where each exon went."""

    def __init__(self, rng: np.random.Generator, rules: ExpressionRules, family: RuleFamily,
                 background: BackgroundPlanter | None = None):
        self.rng, self.rules, self.family = rng, rules, family
        self.background = background
        self.pieces: list[str] = []
        self.length = 0
        self.planted: list[dict[str, int]] = []
        self.are = next(m.sequence for m in rules.rna_motifs if m.name == "are")

    def add(self, sequence: str) -> tuple[int, int]:
        span = (self.length, self.length + len(sequence))
        self.pieces.append(sequence)
        self.length += len(sequence)
        return span

    def promoter_flank(self, length: int) -> None:
        """`length` bases ending at a TSS; each promoter motif planted 0-3 times (Poisson) in the
        promoter region, in a random orientation."""
        start, end = self.rules.promoter_region
        copies = {m.name: _copies(self.rng, self.family.promoter.copies_mean)
                  for m in self.rules.promoter_motifs}
        self.planted.append(copies)
        motifs = [
            m.sequence if self.rng.random() < 0.5 else reverse_complement(m.sequence)
            for m in self.rules.promoter_motifs for _ in range(copies[m.name])
        ]
        self.add(random_bases(self.rng, length + start))
        self.add(_plant(self.rng, motifs, end - start))
        self.add(random_bases(self.rng, -end))

    def intron(self, length: int, are_probability: float = 0.0) -> None:
        motifs = [self.are] if self.rng.random() < are_probability else []
        self.add(self.with_background("GT" + _plant(self.rng, motifs, length - 4) + "AG"))

    def with_background(self, intron: str) -> str:
        """`intron` with background sites planted (splice sites and planted AREs kept)."""
        if self.background is None:
            return intron
        return self.background.plant(intron, "intronic", protect=(self.are,))

    def utr3(self) -> str:
        """3' end: AU-rich elements and the other RNA motifs, then a polyadenylation signal."""
        rna = self.family.rna
        motifs = [self.are] * _copies(self.rng, rna.are_copies_mean, at_most=5)
        for motif in self.rules.rna_motifs:
            if motif.name != "are":
                motifs += [motif.sequence] * _copies(self.rng, rna.copies_mean)
        length = int(self.rng.integers(80, 400)) + sum(len(m) + 20 for m in motifs)
        return _plant(self.rng, motifs, length) + "AATAAA" + random_bases(self.rng, 20)

    def exon_length(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high))


def design_gene(
    rng: np.random.Generator, rules: ExpressionRules, family: RuleFamily, coding: bool,
    background: BackgroundPlanter | None = None,
) -> GeneDesign:
    """A gene with 2-4 isoforms (+ a retained-intron isoform for some coding genes); with
    `background`, its introns receive the background grammar's sites."""
    b = _LocusBuilder(rng, rules, family, background)
    b.promoter_flank(UPSTREAM)
    first_exons = [b.add(random_bases(rng, b.exon_length(50, 150)))]
    if rng.random() < 0.45:  # alternative TSS: its own promoter, inside the first intron
        b.add(b.with_background("GT" + random_bases(rng, b.exon_length(1200, 2000))))
        b.promoter_flank(UPSTREAM)
        first_exons.append(b.add(random_bases(rng, b.exon_length(50, 150))))
    b.intron(b.exon_length(1100, 1800))

    n_cassettes = int(rng.choice(3, p=[0.4, 0.4, 0.2]))
    n_last = 2 if rng.random() < 0.5 else 1
    if n_cassettes == 0 and n_last == 1 and len(first_exons) == 1:
        n_last = 2  # every gene has at least two isoforms
    if coding:
        body = _coding_body(b, n_cassettes, n_last)
    else:
        body = _noncoding_body(b, n_cassettes, n_last)
    b.add(random_bases(rng, DOWNSTREAM))
    gene = GeneDesign(
        kind="protein_coding" if coding else "lncRNA",
        locus="".join(b.pieces),
        planted_promoters=b.planted,
    )
    gene.transcripts = _isoforms(rng, gene, first_exons, body, coding)
    return gene


@dataclass
class _Body:
    """Exons after the first exon: constitutive ones, cassettes and alternative last exons."""

    middle: list[tuple[tuple[int, int], bool]]  # (span, is_cassette) in order
    last: list[tuple[int, int]]
    cds_start: int | None = None  # locus position of the ATG
    stop_ends: list[int] = field(default_factory=list)  # per last exon


def _coding_body(b: _LocusBuilder, n_cassettes: int, n_last: int) -> _Body:
    rng = b.rng
    cysteine_rich = bool(rng.random() < b.family.protein.cysteine_rich_share)

    def codons(n: int) -> str:
        return _random_codons(rng, n, _composition(rng, cysteine_rich))

    # Constitutive ORF (ATG + codons) split over E1 and constitutive internal exons.
    n_constitutive = int(rng.integers(2, 5))  # E1 + 1-3 internal
    orf = "ATG" + codons(int(rng.integers(50, 120)))
    cassette_after = set(
        rng.choice(
            np.arange(1, n_constitutive), replace=False, size=min(n_cassettes, n_constitutive - 1)
        ).tolist()
    )
    # Parts of >= 10 codons; a cut leaves the codon boundary unless a cassette sits there.
    n_codons = len(orf) // 3
    sizes = 10 + rng.multinomial(
        n_codons - 10 * n_constitutive, np.full(n_constitutive, 1 / n_constitutive)
    )
    cuts = [
        3 * int(c) + (0 if i + 1 in cassette_after else int(rng.integers(0, 3)))
        for i, c in enumerate(np.cumsum(sizes)[:-1])
    ]
    parts = [orf[i:j] for i, j in zip([0, *cuts], [*cuts, len(orf)])]

    utr5 = random_bases(rng, b.exon_length(10, 50))
    middle: list[tuple[tuple[int, int], bool]] = []
    body = _Body(middle=middle, last=[])
    for i, part in enumerate(parts):
        if i == 0:
            span = b.add(utr5 + part)
            body.cds_start = span[0] + len(utr5)
        else:
            b.intron(b.exon_length(200, 900), are_probability=0.3)
            span = b.add(part)
        middle.append((span, False))
        if i + 1 in cassette_after:
            b.intron(b.exon_length(200, 900), are_probability=0.3)
            cassette = codons(int(rng.integers(15, 40)))
            middle.append((b.add(cassette), True))
    for _ in range(n_last):
        b.intron(b.exon_length(200, 900), are_probability=0.3)
        coding = codons(int(rng.integers(30, 80)))
        coding += _STOPS[rng.integers(3)]
        span = b.add(coding + b.utr3())
        body.last.append(span)
        body.stop_ends.append(span[0] + len(coding))
    return body


def _noncoding_body(b: _LocusBuilder, n_cassettes: int, n_last: int) -> _Body:
    is_cassette = [False] * int(b.rng.integers(1, 3)) + [True] * n_cassettes
    b.rng.shuffle(is_cassette)
    middle = []
    for cassette in is_cassette:
        b.intron(b.exon_length(200, 900), are_probability=0.3)
        middle.append((b.add(random_bases(b.rng, b.exon_length(80, 250))), cassette))
    last = []
    for _ in range(n_last):
        b.intron(b.exon_length(200, 900), are_probability=0.3)
        last.append(b.add(random_bases(b.rng, b.exon_length(60, 300)) + b.utr3()))
    return _Body(middle=middle, last=last)


def _isoforms(
    rng: np.random.Generator,
    gene: GeneDesign,
    first_exons: list[tuple[int, int]],
    body: _Body,
    coding: bool,
) -> list[TranscriptDesign]:
    cassettes = [i for i, (_, is_cassette) in enumerate(body.middle) if is_cassette]
    subsets = [
        frozenset(c)
        for r in range(len(cassettes), -1, -1)
        for c in itertools.combinations(cassettes, r)
    ]
    combos = list(itertools.product(range(len(first_exons)), subsets, range(len(body.last))))
    n_isoforms = min(int(rng.integers(2, 5)), len(combos))
    chosen = [combos[0]] + [
        combos[i]
        for i in sorted(rng.choice(np.arange(1, len(combos)), n_isoforms - 1, replace=False))
    ]
    transcripts = []
    for first, included, last in chosen:
        middle = [
            span
            for i, (span, is_cassette) in enumerate(body.middle)
            if not is_cassette or i in included
        ]
        exons = [first_exons[first], *middle, body.last[last]]
        cds = (body.cds_start, body.stop_ends[last]) if coding else None
        transcripts.append(
            _transcript(gene, "protein_coding" if coding else "lncRNA", exons, cds, first)
        )
    transcripts[0].tags = ("basic", "CCDS") if coding else ("basic",)

    canonical = transcripts[0].exons
    retainable = [
        i for i in range(1, len(canonical) - 1) if canonical[i + 1][0] - canonical[i][1] <= 700
    ]
    if coding and retainable and rng.random() < 0.35:
        i = retainable[int(rng.integers(len(retainable)))]
        merged = (canonical[i][0], canonical[i + 1][1])
        exons = [*canonical[:i], merged, *canonical[i + 2 :]]
        transcripts.append(_transcript(gene, "retained_intron", exons, None, 0))
    return transcripts


def _transcript(
    gene: GeneDesign,
    transcript_type: str,
    exons: list[tuple[int, int]],
    cds: tuple[int, int] | None,
    first_exon: int,
) -> TranscriptDesign:
    rna = "".join(gene.locus[start:end] for start, end in exons)
    protein = ""
    if cds is not None:
        offsets = [0]
        for start, end in exons:
            offsets.append(offsets[-1] + end - start)
        to_rna = {}
        for (start, end), offset in zip(exons, offsets):
            for position in cds:
                if start <= position <= end:
                    to_rna.setdefault(position, offset + position - start)
        coding = rna[to_rna[cds[0]] : to_rna[cds[1]]]
        assert len(coding) % 3 == 0 and coding.startswith("ATG") and coding[-3:] in _STOPS
        protein = translate(coding)[:-1]
        assert "*" not in protein
    return TranscriptDesign(
        transcript_type=transcript_type, exons=exons, cds=cds, protein=protein, rna=rna,
        first_exon=first_exon,
    )
