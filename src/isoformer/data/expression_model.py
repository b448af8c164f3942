"""Generative expression rules of the simulated study: expression from DNA, RNA and protein.

Each transcript's expected expression in tissue k is, in natural-log TPM,

    log_tpm[k] = intercept + gene_baseline + dna[k] + rna[k] + protein[k]

and the noise-free target is `log1p(exp(log_tpm))`, the scale of the dataset's targets. Each
term reads one sequence only, through features a sequence model can learn:

- dna: copies of tissue-specific promoter motifs in the TSS-centred DNA window, in the region
  `promoter_region` (bp relative to the TSS, 5'->3' on the transcript's strand; inside a 1,024 bp
  window, outside the RNA). Each copy adds its motif's tissue profile. Motifs are periodic
  (period 2-3, 24 bp), so every reading frame of non-overlapping 6-mers shows them.
- rna: copies of an AU-rich destabilising element (down, more so in immune tissues) and of a
  stabilising AC repeat (up) anywhere in the spliced RNA; they sit in 3'UTRs and retained
  introns, so isoforms of one gene differ by their last exon and intron retention.
- protein: net charge per residue, (K + R - D - E) / length, times a tissue profile (stronger
  in secretory tissues); non-coding transcripts (empty protein) get a fixed offset instead.
  The simulator balances codon first bases so the charge is not visible as RNA composition.
- gene_baseline: one normal draw per gene, the part no sequence explains.

Observed TPM per sample is `exp(log_tpm) * exp(sd * e - sd^2 / 2)`, e ~ N(0, 1), so each
sample's expected TPM equals the noise-free TPM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from isoformer.constants import TISSUES

COMPONENTS: tuple[str, ...] = ("gene_baseline", "dna", "rna", "protein")
POSITIVE_RESIDUES = frozenset("KR")
NEGATIVE_RESIDUES = frozenset("DE")


def tissue_profile(weights: Mapping[str, float], elsewhere: float) -> tuple[float, ...]:
    """One value per tissue of TISSUES: `weights[tissue]` where given, `elsewhere` otherwise."""
    unknown = set(weights) - set(TISSUES)
    if unknown:
        raise ValueError(f"unknown tissues in a profile: {sorted(unknown)}")
    return tuple(float(weights.get(tissue, elsewhere)) for tissue in TISSUES)


def _default_promoter_motifs() -> dict[str, str]:
    return {
        "cpg": "CG" * 12,
        "tata": "TA" * 12,
        "cag": "CAG" * 8,
        "ga": "GA" * 12,
        "tcc": "TCC" * 8,
        "aac": "AAC" * 8,
        "ggt": "GGT" * 8,
    }


def _default_promoter_weights() -> dict[str, tuple[float, ...]]:
    return {
        "cpg": tissue_profile({}, elsewhere=0.7),  # housekeeping: up everywhere
        "tata": tissue_profile(
            {
                "Liver": 1.6,
                "Kidney": 1.3,
                "Small Intestine": 1.0,
                "Colon": 0.8,
                "Stomach": 0.8,
                "Pancreas": 0.8,
                "Adrenal Gland": 0.5,
            },
            -0.3,
        ),
        "cag": tissue_profile(
            {"Brain": 1.8, "Pituitary": 1.3, "Nerve": 1.0, "Adrenal Gland": 0.4}, -0.3
        ),
        "ga": tissue_profile(
            {"Testis": 2.0, "Ovary": 0.8, "Fallopian Tube": 0.6, "Uterus": 0.4}, -0.3
        ),
        "tcc": tissue_profile(
            {
                "Muscle": 1.7,
                "Heart": 1.5,
                "Blood Vessel": 0.8,
                "Esophagus": 0.6,
                "Bladder": 0.6,
                "Uterus": 0.5,
                "Colon": 0.4,
                "Stomach": 0.4,
            },
            -0.3,
        ),
        "aac": tissue_profile(
            {"Blood": 1.7, "Spleen": 1.5, "Lung": 0.7, "Small Intestine": 0.4}, -0.3
        ),
        "ggt": tissue_profile(
            {
                "Skin": 1.4,
                "Esophagus": 1.2,
                "Vagina": 1.2,
                "Cervix Uteri": 1.0,
                "Salivary Gland": 0.7,
                "Breast": 0.7,
                "Prostate": 0.7,
                "Thyroid": 0.7,
                "Bladder": 0.5,
                "Adipose Tissue": 0.5,
            },
            -0.3,
        ),
    }


def _default_rna_motifs() -> dict[str, str]:
    return {"are": "TTTA" * 6, "ac": "AC" * 12}


def _default_rna_weights() -> dict[str, tuple[float, ...]]:
    return {
        "are": tissue_profile({"Blood": -0.6, "Spleen": -0.55, "Lung": -0.5}, -0.4),
        "ac": tissue_profile({}, elsewhere=0.37),
    }


def _default_protein_weights() -> tuple[float, ...]:
    # Per unit of net charge per residue (which spans about -0.2..0.2).
    return tissue_profile(
        {"Pancreas": 9.5, "Liver": 8.5, "Salivary Gland": 8.5, "Stomach": 8.0}, elsewhere=6.0
    )


@dataclass(frozen=True)
class ExpressionRules:
    """The generative rules; every number of the simulated expression lives here."""

    tissues: tuple[str, ...] = TISSUES
    intercept: float = 2.2
    promoter_region: tuple[int, int] = (-300, -20)  # [start, end) bp relative to the TSS
    promoter_motifs: dict[str, str] = field(default_factory=_default_promoter_motifs)
    promoter_weights: dict[str, tuple[float, ...]] = field(
        default_factory=_default_promoter_weights
    )
    rna_motifs: dict[str, str] = field(default_factory=_default_rna_motifs)
    rna_weights: dict[str, tuple[float, ...]] = field(default_factory=_default_rna_weights)
    protein_weights: tuple[float, ...] = field(default_factory=_default_protein_weights)
    noncoding_offset: float = -1.0
    gene_baseline_sd: float = 0.3
    sample_log_sd: float = 0.75

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> ExpressionRules:
        return cls(
            tissues=tuple(data["tissues"]),
            intercept=data["intercept"],
            promoter_region=tuple(data["promoter_region"]),
            promoter_motifs=dict(data["promoter_motifs"]),
            promoter_weights={k: tuple(v) for k, v in data["promoter_weights"].items()},
            rna_motifs=dict(data["rna_motifs"]),
            rna_weights={k: tuple(v) for k, v in data["rna_weights"].items()},
            protein_weights=tuple(data["protein_weights"]),
            noncoding_offset=data["noncoding_offset"],
            gene_baseline_sd=data["gene_baseline_sd"],
            sample_log_sd=data["sample_log_sd"],
        )


@dataclass(frozen=True)
class SequenceFeatures:
    """What the rules read from one transcript's three sequences."""

    promoter_motifs: dict[str, int]  # copies in the promoter region of the DNA window
    rna_motifs: dict[str, int]  # copies in the spliced RNA
    net_charge: float | None  # (K + R - D - E) / length; None for non-coding (empty protein)


def promoter_sequence(dna_window: str, rules: ExpressionRules) -> str:
    """The promoter region of a TSS-centred window (TSS at index len // 2), upper case."""
    center = len(dna_window) // 2
    start, end = rules.promoter_region
    if center + start < 0:
        raise ValueError(f"a {len(dna_window)} bp window does not reach {start} bp before the TSS")
    return dna_window[center + start : center + end].upper()


def net_charge(protein: str) -> float | None:
    if not protein:
        return None
    positive = sum(residue in POSITIVE_RESIDUES for residue in protein)
    negative = sum(residue in NEGATIVE_RESIDUES for residue in protein)
    return (positive - negative) / len(protein)


def sequence_features(
    dna_window: str, rna: str, protein: str, rules: ExpressionRules
) -> SequenceFeatures:
    """Features of one transcript: motif copies are non-overlapping exact matches (str.count)."""
    promoter = promoter_sequence(dna_window, rules)
    rna = rna.upper()
    return SequenceFeatures(
        promoter_motifs={
            name: promoter.count(motif) for name, motif in rules.promoter_motifs.items()
        },
        rna_motifs={name: rna.count(motif) for name, motif in rules.rna_motifs.items()},
        net_charge=net_charge(protein),
    )


def expression_components(
    features: SequenceFeatures, gene_baseline: float, rules: ExpressionRules
) -> dict[str, np.ndarray]:
    """Each term of log_tpm (module docstring), as arrays [n_tissues]; gene_baseline broadcast."""
    n = len(rules.tissues)
    dna = np.zeros(n)
    for name, copies in features.promoter_motifs.items():
        dna += copies * np.asarray(rules.promoter_weights[name])
    rna = np.zeros(n)
    for name, copies in features.rna_motifs.items():
        rna += copies * np.asarray(rules.rna_weights[name])
    if features.net_charge is None:
        protein = np.full(n, rules.noncoding_offset)
    else:
        protein = features.net_charge * np.asarray(rules.protein_weights)
    return {"gene_baseline": np.full(n, gene_baseline), "dna": dna, "rna": rna, "protein": protein}


def log_tpm(components: Mapping[str, np.ndarray], rules: ExpressionRules) -> np.ndarray:
    """Expected natural-log TPM [n_tissues]."""
    return rules.intercept + sum(components[name] for name in COMPONENTS)


def noise_free_expression(log_expected_tpm: np.ndarray) -> np.ndarray:
    """The target scale, log(1 + expected TPM)."""
    return np.log1p(np.exp(log_expected_tpm))


def variance_shares(components: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Share of each term in the variance across transcripts, per tissue then averaged.

    components: name -> [n_transcripts, n_tissues]. Shares divide by the summed term variances
    (the terms are drawn independently, so their covariances are near zero), matching how the
    metrics score per tissue across transcripts.
    """
    variances = {
        name: float(np.mean(np.var(values, axis=0))) for name, values in components.items()
    }
    total = sum(variances.values())
    return {name: variance / total for name, variance in variances.items()}
