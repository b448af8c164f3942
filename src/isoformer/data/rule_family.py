"""The family the simulated study draws its expression rules from, one draw per seed.

    family = load_rule_family("rules.yaml")          # the defaults below, overridden by the file
    rules = draw_rules(family, np.random.default_rng(seed))

Nothing in the family is sized to a tokenizer: motifs are 6-12 bp (real binding sites), drawn per
seed in both orientations, and land across NT-v2's 6-mer token boundaries as often as not. Ranges
`(low, high)` are inclusive for counts and lengths, uniform for effects. A YAML file may set any
field, e.g.

    promoter: {n_motifs: [2, 2], sequences: [TATAAAAG, GGGCGG]}
    rna: {length_effect: [0.0, 0.0]}
    noise: {sample_log_sd: 0.5}

Effects are in natural-log TPM per motif copy (promoter and RNA motifs), per doubling of the RNA
length, and per standard deviation of a protein feature across the study's proteins.

`background` (on by default) is not an expression rule: it plants promoter-like motif grammar
across the genome's introns and intergenic stretches (`BackgroundFamily`), so that a model
pretrained on the genome (`isoformer pretrain`) has the study's motifs to learn, as real genomes
hold their transcription factors' sites far beyond the promoters that an expression rule scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from isoformer.constants import TISSUES
from isoformer.data.expression_model import (
    PROTEIN_FEATURES,
    ExpressionRules,
    Motif,
    ProteinFeature,
)
from isoformer.data.genome import reverse_complement
from isoformer.errors import IsoformerError
from isoformer.typed_config import from_plain, to_plain

_BASES = "ACGT"


@dataclass
class PromoterFamily:
    """Transcription-factor-like motifs upstream of each TSS (alternative TSSs: own promoters)."""

    n_motifs: tuple[int, int] = (3, 5)
    motif_length: tuple[int, int] = (6, 12)
    sequences: list[str] | None = None  # fixed motifs instead of drawn ones
    region: tuple[int, int] = (-380, -40)  # [start, end) bp from the TSS where copies count
    copies_mean: float = 0.6  # planted copies per motif and promoter (Poisson, at most 3)
    tissues_per_motif: tuple[int, int] = (2, 8)  # tissues with the motif's full effect
    effect: tuple[float, float] = (0.5, 1.1)  # per copy in those tissues
    repressor_share: float = 0.25  # motifs whose effect is negative
    broad_motifs: int = 1  # the first motifs act in every tissue (housekeeping promoters)
    other_tissues_sd: float = 0.08  # per-copy effect elsewhere ~ N(0, sd)


@dataclass
class RnaFamily:
    """Elements of the mature RNA: the AU-rich element, other motifs, the length effect."""

    are_sequence: str = "ATTTA"  # the canonical AU-rich element (AUUUA)
    are_copies_mean: float = 1.5  # planted in 3'UTRs (and some retained introns)
    are_effect: tuple[float, float] = (-0.4, -0.2)  # per copy (destabilising)
    are_tissues: tuple[int, int] = (3, 8)  # tissues where it acts 1.5x more strongly
    n_motifs: tuple[int, int] = (1, 2)  # other 3'UTR elements, stabilising or not
    motif_length: tuple[int, int] = (6, 10)
    sequences: list[str] | None = None
    copies_mean: float = 0.8
    effect: tuple[float, float] = (0.3, 0.6)  # magnitude per copy; the sign is drawn
    tissues_per_motif: tuple[int, int] = (5, 30)
    length_effect: tuple[float, float] = (-0.4, -0.15)  # per doubling of the RNA length


@dataclass
class ProteinFamily:
    """Composition features of the protein (`PROTEIN_FEATURES`), each with a tissue profile."""

    features: list[str] = field(default_factory=lambda: list(PROTEIN_FEATURES))
    n_features: tuple[int, int] = (2, 3)
    effect: tuple[float, float] = (0.2, 0.4)  # per standard deviation of the feature
    tissues_per_feature: tuple[int, int] = (3, 10)  # tissues where it acts 2x more strongly
    cysteine_rich_share: float = 0.2  # genes whose proteins are cysteine-rich (a protein class)
    noncoding_offset: float = -1.0  # non-coding transcripts (no protein)


@dataclass
class NoiseFamily:
    intercept: float = 2.2
    gene_sd: float = 0.4  # per gene, all tissues: what no sequence explains
    gene_tissue_sd: float = 0.2  # per gene and tissue
    sample_log_sd: float = 0.75  # per sample (log-normal)


@dataclass
class BackgroundFamily:
    """Promoter-like motif grammar recurring across the genome, outside the scored promoters.

    Sites are planted in intronic and intergenic sequence (never in exons, promoter flanks, repeat
    copies, soft-masked stretches or N runs), `motif_rate` per kb of such sequence (a Poisson
    count per stretch), each in a random orientation. A site is one of the study's promoter
    motifs (share `promoter_share` of single sites), one of the seed's decoy motifs (TF-like
    6-12 bp sites with no effect on expression: the rest), or, for a share `pair_share` of all
    sites, a motif pair: two motifs in a fixed relative orientation at the pair's fixed spacing
    (random bases between them), planted as one unit in either orientation (a composite element,
    the co-occurrence grammar). The decoys and pairs are drawn per seed and, with every planted
    count, recorded in truth.json ("background").

    Nothing here changes an expression rule or a transcript's features: the promoter regions the
    rules score lie in the promoter flanks, and exons are untouched (only retained-intron RNAs,
    which hold an intron, can see a site, and their features are computed from the planted
    sequence). The sites come from a random stream of their own (the seed's second), so gene
    structures, motif draws and noise are the same with `motif_rate: 0` (off) as with the default.
    """

    motif_rate: float = 2.0  # sites per kb of intronic and intergenic sequence; 0 = off
    promoter_share: float = 0.5  # of single sites: a promoter motif of the rules (else a decoy)
    n_decoys: tuple[int, int] = (3, 5)  # TF-like motifs without an expression effect
    decoy_length: tuple[int, int] = (6, 12)
    decoys: list[str] | None = None  # fixed decoy motifs instead of drawn ones
    pair_share: float = 0.3  # of all sites: a motif pair instead of a single motif
    n_pairs: tuple[int, int] = (2, 3)  # pairs drawn per seed: a promoter motif + another motif
    pair_spacing: tuple[int, int] = (4, 20)  # bp between a pair's motifs (fixed per pair)


@dataclass
class RuleFamily:
    promoter: PromoterFamily = field(default_factory=PromoterFamily)
    rna: RnaFamily = field(default_factory=RnaFamily)
    protein: ProteinFamily = field(default_factory=ProteinFamily)
    noise: NoiseFamily = field(default_factory=NoiseFamily)
    background: BackgroundFamily = field(default_factory=BackgroundFamily)

    def __post_init__(self) -> None:
        for part in ("promoter", "rna", "protein", "background"):
            for name, value in vars(getattr(self, part)).items():
                if isinstance(value, tuple) and name != "region" and not value[0] <= value[1]:
                    raise IsoformerError(f"rules: {part}.{name} {list(value)} must be [low, high] "
                                         "with low <= high")
        if min(self.promoter.motif_length[0], self.rna.motif_length[0]) < 1:
            raise IsoformerError("rules: motif lengths must be at least 1")
        unknown = sorted(set(self.protein.features) - set(PROTEIN_FEATURES))
        if unknown:
            raise IsoformerError(
                f"rules: unknown protein features {unknown} (known: {', '.join(PROTEIN_FEATURES)})"
            )
        for name, sequences in (("promoter", self.promoter.sequences),
                                ("rna", self.rna.sequences),
                                ("background", self.background.decoys)):
            bad = [s for s in sequences or [] if not s or set(s.upper()) - set(_BASES)]
            if bad:
                raise IsoformerError(f"rules: {name}.sequences {bad} are not ACGT motifs")
        b = self.background
        if b.motif_rate < 0 or b.decoy_length[0] < 1 or b.pair_spacing[0] < 0 or not (
                0.0 <= b.promoter_share <= 1.0 and 0.0 <= b.pair_share <= 1.0):
            raise IsoformerError(
                "rules: background.motif_rate and pair_spacing must be non-negative, "
                "decoy_length at least 1, promoter_share and pair_share within [0, 1]"
            )
        start, end = self.promoter.region
        if not start < end <= 0:
            raise IsoformerError(
                f"rules: promoter.region {[start, end]} must lie upstream of the TSS (start < end "
                "<= 0)"
            )

    def to_json(self) -> dict:
        return to_plain(self)


def load_rule_family(path: str | Path | None = None) -> RuleFamily:
    """The default family, with the fields a YAML file sets replaced; errors name the file."""
    if path is None:
        return RuleFamily()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise IsoformerError(f"{path}: cannot read the rules ({error})") from None
    try:
        return from_plain(RuleFamily, data, "")
    except IsoformerError as error:
        raise IsoformerError(f"{path}: {error}") from None


def _count(rng: np.random.Generator, low_high: tuple[int, int]) -> int:
    return int(rng.integers(low_high[0], low_high[1] + 1))


def _uniform(rng: np.random.Generator, low_high: tuple[float, float]) -> float:
    return float(rng.uniform(*low_high))


def _profile(
    rng: np.random.Generator, n_strong: int, strong: float, others: np.ndarray
) -> list[float]:
    """`strong` in `n_strong` random tissues, `others` [tissues] elsewhere."""
    values = others.copy()
    values[rng.choice(len(TISSUES), min(n_strong, len(TISSUES)), replace=False)] = strong
    return values.round(4).tolist()


def _draw_sequences(
    rng: np.random.Generator, fixed: list[str] | None, n: tuple[int, int],
    length: tuple[int, int], taken: set[str],
) -> list[str]:
    """Fixed motifs, or distinct random ones (none the reverse complement of another)."""
    if fixed:
        return [s.upper() for s in fixed]
    target = _count(rng, n)
    sequences: list[str] = []
    while len(sequences) < target:
        motif = "".join(rng.choice(list(_BASES), _count(rng, length)))
        if motif not in taken and reverse_complement(motif) not in taken:
            sequences.append(motif)
            taken |= {motif, reverse_complement(motif)}
    return sequences


def draw_rules(family: RuleFamily, rng: np.random.Generator) -> ExpressionRules:
    """One draw of the rules; the protein features' centre and scale are set later, from the
    study's proteins (`ExpressionRules.calibrated`)."""
    n_tissues = len(TISSUES)
    p, r, q = family.promoter, family.rna, family.protein
    taken: set[str] = set()

    promoter_motifs = []
    for i, sequence in enumerate(_draw_sequences(rng, p.sequences, p.n_motifs, p.motif_length,
                                                 taken)):
        sign = -1.0 if i >= p.broad_motifs and rng.random() < p.repressor_share else 1.0
        effect = sign * _uniform(rng, p.effect)
        if i < p.broad_motifs:
            weights = (effect * rng.uniform(0.8, 1.2, n_tissues)).round(4).tolist()
        else:
            others = rng.normal(0.0, p.other_tissues_sd, n_tissues)
            weights = _profile(rng, _count(rng, p.tissues_per_motif), effect, others)
        promoter_motifs.append(Motif(f"promoter_{i + 1}", sequence, weights, both_strands=True))

    are = _uniform(rng, r.are_effect)
    are_weights = _profile(rng, _count(rng, r.are_tissues), 1.5 * are, np.full(n_tissues, are))
    rna_motifs = [Motif("are", r.are_sequence.upper(), are_weights, both_strands=False)]
    taken |= {r.are_sequence.upper()}
    for i, sequence in enumerate(_draw_sequences(rng, r.sequences, r.n_motifs, r.motif_length,
                                                 taken)):
        effect = _uniform(rng, r.effect) * (1.0 if rng.random() < 0.5 else -1.0)
        weights = _profile(rng, _count(rng, r.tissues_per_motif), effect,
                           rng.normal(0.0, 0.05, n_tissues))
        rna_motifs.append(Motif(f"rna_{i + 1}", sequence, weights, both_strands=False))
    length_effect = _uniform(rng, r.length_effect)
    rna_length_weights = (length_effect * rng.uniform(0.7, 1.3, n_tissues)).round(4).tolist()

    n_features = min(_count(rng, q.n_features), len(q.features))
    protein_features = []
    for name in sorted(rng.choice(q.features, n_features, replace=False).tolist()):
        effect = _uniform(rng, q.effect) * (1.0 if rng.random() < 0.5 else -1.0)
        weights = _profile(rng, _count(rng, q.tissues_per_feature), 2 * effect,
                           np.full(n_tissues, effect))
        protein_features.append(ProteinFeature(name, weights))

    return ExpressionRules(
        tissues=list(TISSUES),
        intercept=family.noise.intercept,
        promoter_region=tuple(p.region),
        promoter_motifs=promoter_motifs,
        rna_motifs=rna_motifs,
        rna_length_weights=rna_length_weights,
        protein_features=protein_features,
        noncoding_offset=q.noncoding_offset,
        gene_sd=family.noise.gene_sd,
        gene_tissue_sd=family.noise.gene_tissue_sd,
        sample_log_sd=family.noise.sample_log_sd,
    )


@dataclass(frozen=True)
class MotifPair:
    """Two motifs (names in `BackgroundGrammar.motifs`) read 5'->3' as `first`, `spacing`
    random bases, `second`: one composite element, planted in either orientation."""

    name: str
    first: str
    second: str
    spacing: int


@dataclass(frozen=True)
class BackgroundGrammar:
    """One seed's draw of the background grammar (`BackgroundFamily`), as truth.json records it."""

    motif_rate: float
    promoter_share: float
    pair_share: float
    motifs: dict[str, str]  # name -> sequence: the rules' promoter motifs, then the decoys
    promoter_motifs: list[str]  # names of the study's promoter motifs (scored in promoters)
    decoys: list[str]  # names of the decoys (scored nowhere)
    pairs: list[MotifPair]

    def to_json(self) -> dict:
        return to_plain(self)

    def draw_site(self, rng: np.random.Generator) -> tuple[str, list[str | int]]:
        """One site: (element name, its parts 5'->3': motif sequences and spacer lengths)."""
        if self.pairs and rng.random() < self.pair_share:
            pair = self.pairs[int(rng.integers(len(self.pairs)))]
            return pair.name, [self.motifs[pair.first], pair.spacing, self.motifs[pair.second]]
        use_promoter = self.promoter_motifs and (
            not self.decoys or rng.random() < self.promoter_share)
        names = self.promoter_motifs if use_promoter else self.decoys
        name = names[int(rng.integers(len(names)))]
        return name, [self.motifs[name]]


def draw_background(
    family: BackgroundFamily, rules: ExpressionRules, rng: np.random.Generator
) -> BackgroundGrammar:
    """The decoys (distinct from every motif of `rules`, in either orientation) and the motif
    pairs of one seed, drawn from `rng` (the background's own stream)."""
    taken: set[str] = set()
    for motif in [*rules.promoter_motifs, *rules.rna_motifs]:
        taken |= {motif.sequence, reverse_complement(motif.sequence)}
    motifs = {m.name: m.sequence for m in rules.promoter_motifs}
    promoter_names = list(motifs)
    decoy_names = []
    for i, sequence in enumerate(_draw_sequences(rng, family.decoys, family.n_decoys,
                                                 family.decoy_length, taken)):
        motifs[f"decoy_{i + 1}"] = sequence
        decoy_names.append(f"decoy_{i + 1}")
    candidates = [(first, second) for first in promoter_names for second in motifs
                  if second != first]
    n_pairs = min(_count(rng, family.n_pairs), len(candidates))
    pairs = []
    for i, index in enumerate(rng.choice(len(candidates), n_pairs, replace=False).tolist()):
        first, second = candidates[index]
        pairs.append(MotifPair(f"pair_{i + 1}", first, second, _count(rng, family.pair_spacing)))
    return BackgroundGrammar(
        motif_rate=family.motif_rate, promoter_share=family.promoter_share,
        pair_share=family.pair_share, motifs=motifs, promoter_motifs=promoter_names,
        decoys=decoy_names, pairs=pairs,
    )
