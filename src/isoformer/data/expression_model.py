"""Expression rules of the simulated study: expression from DNA, RNA and protein.

Each transcript's expected expression in tissue k is, in natural-log TPM,

    log_tpm[k] = intercept + gene[k] + dna[k] + rna[k] + protein[k]

and the noise-free target is `log1p(exp(log_tpm))`, the scale of the dataset's targets. Each
sequence term reads one sequence only; the rules themselves are drawn per seed
(`isoformer.data.rule_family`) and written to truth.json:

- dna: occurrences of promoter motifs (6-12 bp, either orientation) in `promoter_region` of the
  TSS-centred window (bp relative to the transcript's own TSS, upstream, outside the RNA), each
  adding its motif's tissue profile. Every occurrence counts, planted or arisen by chance.
- rna: occurrences of RNA motifs (the AU-rich element ATTTA, other elements) anywhere in the
  spliced RNA, in its own orientation, each adding its profile; plus `rna_length_weights` per
  doubling of the RNA length (log2 of length / 1,000 nt). Motifs are planted in 3'UTRs (and the
  AU-rich element in some retained introns), so isoforms differ by their last exon.
- protein: composition features (`PROTEIN_FEATURES`: residue share, or share of one set minus
  another), standardised by their centre and scale across the study's proteins, times a tissue
  profile; non-coding transcripts (empty protein) get `noncoding_offset` instead. The RNA holds
  the coding sequence, so it carries some of the same information, as in real transcripts.
- gene: one normal draw per gene plus one per gene and tissue, the part no sequence explains.

Observed TPM per sample is `exp(log_tpm) * exp(sd * e - sd^2 / 2)`, e ~ N(0, 1), so each
sample's expected TPM equals the noise-free TPM.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from isoformer.data.genome import reverse_complement
from isoformer.typed_config import from_plain, to_plain

COMPONENTS: tuple[str, ...] = ("gene", "dna", "rna", "protein")
# name -> (residues counted +1, residues counted -1), per residue of the protein.
PROTEIN_FEATURES: dict[str, tuple[str, str]] = {
    "charge": ("KR", "DE"),
    "cysteine": ("C", ""),
    "hydrophobic": ("AILMFVW", ""),
}


@dataclass(frozen=True)
class Motif:
    name: str
    sequence: str
    weights: list[float]  # per occurrence, per tissue
    both_strands: bool  # promoter motifs bind either orientation; RNA motifs read the RNA's own


@dataclass(frozen=True)
class ProteinFeature:
    name: str  # a key of PROTEIN_FEATURES
    weights: list[float]  # per standard deviation, per tissue
    center: float = 0.0  # mean and standard deviation over the study's proteins
    scale: float = 1.0


@dataclass(frozen=True)
class ExpressionRules:
    """One draw of the rules; every number of the simulated expression lives here."""

    tissues: list[str]
    intercept: float
    promoter_region: tuple[int, int]  # [start, end) bp relative to the TSS
    promoter_motifs: list[Motif]
    rna_motifs: list[Motif]
    rna_length_weights: list[float]  # per doubling of the RNA length, per tissue
    protein_features: list[ProteinFeature]
    noncoding_offset: float
    gene_sd: float
    gene_tissue_sd: float
    sample_log_sd: float

    def to_json(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_json(cls, data: Mapping) -> ExpressionRules:
        return from_plain(cls, dict(data), "rules")

    def calibrated(self, proteins: Sequence[str]) -> ExpressionRules:
        """The rules with each protein feature's centre and scale measured on `proteins`."""
        features = []
        for feature in self.protein_features:
            values = np.array([protein_feature(p, feature.name) for p in proteins if p])
            scale = float(values.std()) if len(values) > 1 and values.std() > 0 else 1.0
            center = float(values.mean()) if len(values) else 0.0
            features.append(replace(feature, center=round(center, 6), scale=round(scale, 6)))
        return replace(self, protein_features=features)


@dataclass(frozen=True)
class SequenceFeatures:
    """What the rules read from one transcript's three sequences."""

    promoter_motifs: dict[str, int]  # occurrences in the promoter region of the DNA window
    rna_motifs: dict[str, int]  # occurrences in the spliced RNA
    rna_length: int
    protein: dict[str, float] | None  # feature values; None for non-coding (empty protein)


def promoter_sequence(dna_window: str, rules: ExpressionRules) -> str:
    """The promoter region of a TSS-centred window (TSS at index len // 2), upper case."""
    center = len(dna_window) // 2
    start, end = rules.promoter_region
    if center + start < 0:
        raise ValueError(f"a {len(dna_window)} bp window does not reach {start} bp before the TSS")
    return dna_window[center + start : center + end].upper()


def count_occurrences(sequence: str, motif: Motif) -> int:
    """Occurrences of the motif, overlapping ones included; with `both_strands`, also of its
    reverse complement (a palindromic motif counts once per position)."""
    patterns = {motif.sequence}
    if motif.both_strands:
        patterns.add(reverse_complement(motif.sequence))
    return sum(len(re.findall(f"(?={p})", sequence)) for p in patterns)


def protein_feature(protein: str, name: str) -> float:
    plus, minus = PROTEIN_FEATURES[name]
    return (sum(r in plus for r in protein) - sum(r in minus for r in protein)) / len(protein)


def sequence_features(
    dna_window: str, rna: str, protein: str, rules: ExpressionRules
) -> SequenceFeatures:
    promoter = promoter_sequence(dna_window, rules)
    rna = rna.upper()
    return SequenceFeatures(
        promoter_motifs={m.name: count_occurrences(promoter, m) for m in rules.promoter_motifs},
        rna_motifs={m.name: count_occurrences(rna, m) for m in rules.rna_motifs},
        rna_length=len(rna),
        protein=(
            {f.name: round(protein_feature(protein, f.name), 6) for f in rules.protein_features}
            if protein else None
        ),
    )


def expression_components(
    features: SequenceFeatures, gene_effect: np.ndarray, rules: ExpressionRules
) -> dict[str, np.ndarray]:
    """Each term of log_tpm (module docstring), as arrays [n_tissues]; gene_effect [n_tissues]."""
    n = len(rules.tissues)
    dna = np.zeros(n)
    for motif in rules.promoter_motifs:
        dna += features.promoter_motifs[motif.name] * np.asarray(motif.weights)
    rna = np.log2(features.rna_length / 1000) * np.asarray(rules.rna_length_weights)
    for motif in rules.rna_motifs:
        rna += features.rna_motifs[motif.name] * np.asarray(motif.weights)
    if features.protein is None:
        protein = np.full(n, rules.noncoding_offset)
    else:
        protein = np.zeros(n)
        for feature in rules.protein_features:
            standardised = (features.protein[feature.name] - feature.center) / feature.scale
            protein += standardised * np.asarray(feature.weights)
    return {"gene": np.asarray(gene_effect, dtype=float), "dna": dna, "rna": rna,
            "protein": protein}


def log_tpm(components: Mapping[str, np.ndarray], rules: ExpressionRules) -> np.ndarray:
    """Expected natural-log TPM [n_tissues]."""
    return rules.intercept + sum(components[name] for name in COMPONENTS)


def noise_free_expression(log_expected_tpm: np.ndarray) -> np.ndarray:
    """The target scale, log(1 + expected TPM)."""
    return np.log1p(np.exp(log_expected_tpm))


def oracle_expression(
    components: Mapping[str, np.ndarray], keep: Sequence[str], intercept: float
) -> np.ndarray:
    """The noise-free expression with every term not in `keep` held at its mean over the
    transcripts given: what a perfect model of those terms predicts. components: name ->
    [n_transcripts, n_tissues]."""
    total = intercept + sum(
        values if name in keep else np.broadcast_to(values.mean(axis=0), values.shape)
        for name, values in components.items()
    )
    return noise_free_expression(total)


def variance_shares(components: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Share of each term in the variance across transcripts, per tissue then averaged.

    components: name -> [n_transcripts, n_tissues]. Shares divide by the summed term variances,
    matching how the metrics score per tissue across transcripts.
    """
    variances = {
        name: float(np.mean(np.var(values, axis=0))) for name, values in components.items()
    }
    total = sum(variances.values())
    return {name: variance / total for name, variance in variances.items()}
