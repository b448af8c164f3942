"""`isoformer simulate`: a GTEx-like study in the real file formats, with known generative rules.

Files written to OUT (built in a temporary directory, renamed into place at the end):
    genome.fa               chromosomes (soft-masked stretches, N runs, genes at both ends)
    annotation.gtf          GENCODE v26-style annotation (simulate_annotation.py)
    transcript_tpm.gct.gz   GCT 1.2 as GTEx ships it: `#1.2`, `<rows>\\t<samples>`, header
                            `transcript_id\\tgene_id\\t<SAMPID>...`, TPM with 2 decimals
    sample_attributes.txt   GTEx SampleAttributesDS columns (SAMPID, SMTS, SMTSD, ...): 3-4
                            samples of each of the 30 tissues, 2 of Bone Marrow, and a few
                            samples without expression data (SMAFRZE EXCLUDE)
    truth.json              the rules and the noise-free expression; keys below

truth.json:
    format_version, seed, n_genes, tissues      the tissue order of every per-tissue list
    family                the RuleFamily the rules were drawn from (defaults + --rules FILE.yaml)
    rules                 ExpressionRules.to_json(): the drawn motifs, profiles, features, noise
    variance_shares       each term's share of the variance across transcripts (per tissue,
                          averaged): gene, dna, rna, protein
    oracle                {"r2", "spearman", "pearson"} of the noise-free expression against the
                          observed targets (log1p of the tissue-mean GCT TPM), all transcripts
    oracle_by_modality    the same for each modality's term alone (others held at their mean)
    promoter_occurrences  per promoter motif: {"planted", "counted"} over all transcripts; the
                          difference arose by chance in background sequence (and counts)
    background            the background motif grammar planted in introns and intergenic
                          sequence (rule_family.BackgroundFamily, drawn from the seed's second
                          stream): motif_rate, promoter_share, pair_share, motifs (name ->
                          sequence: the promoter motifs, then the decoys), promoter_motifs,
                          decoys, pairs [{name, first, second, spacing}], and what was planted:
                          sites {element: count}, by_region {intronic, intergenic}, dropped,
                          searched_bases
    near_edge_genes       gene ids whose TSS window runs past a chromosome end
    transcripts           transcript_id -> {gene_id, transcript_type, features (promoter_motifs,
                          rna_motifs, rna_length, protein), protein, components {gene, dna,
                          rna, protein: [tissue]}, log_tpm [tissue], expression [tissue]}
                          where expression = log1p(exp(log_tpm)), the noise-free target.
The rules are documented in expression_model.py, their family in rule_family.py;
`isoformer.analysis.oracle` scores the noise-free expression against a built dataset's targets.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import logging
import shutil
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from isoformer.constants import MODALITIES
from isoformer.data.expression_model import (
    COMPONENTS,
    expression_components,
    log_tpm,
    noise_free_expression,
    oracle_expression,
    sequence_features,
    variance_shares,
)
from isoformer.data.rule_family import RuleFamily, draw_background, draw_rules
from isoformer.data.simulate_annotation import (
    PlacedGene,
    near_edge_genes,
    place_genes,
    write_fasta,
    write_gtf,
)
from isoformer.data.simulate_genes import BackgroundPlanter, design_gene
from isoformer.errors import IsoformerError

log = logging.getLogger(__name__)

DEMO_N_GENES = 600  # ~1,700 transcripts; the whole demo takes ~5 min on 2 CPUs
TRUTH_FORMAT_VERSION = 2
PROMOTER_WINDOW = 1024  # TSS-centred window the DNA features are read from
OTHER_TISSUE = "Bone Marrow"
# GTEx SMTSD values of each SMTS; samples cycle through them.
DETAILED_TISSUES: dict[str, tuple[str, ...]] = {
    "Adipose Tissue": ("Adipose - Subcutaneous", "Adipose - Visceral (Omentum)"),
    "Blood": ("Whole Blood", "Cells - EBV-transformed lymphocytes"),
    "Blood Vessel": ("Artery - Aorta", "Artery - Coronary", "Artery - Tibial"),
    "Brain": ("Brain - Cortex", "Brain - Cerebellum", "Brain - Hippocampus"),
    "Breast": ("Breast - Mammary Tissue",),
    "Cervix Uteri": ("Cervix - Ectocervix", "Cervix - Endocervix"),
    "Colon": ("Colon - Sigmoid", "Colon - Transverse"),
    "Esophagus": ("Esophagus - Mucosa", "Esophagus - Muscularis"),
    "Heart": ("Heart - Atrial Appendage", "Heart - Left Ventricle"),
    "Kidney": ("Kidney - Cortex", "Kidney - Medulla"),
    "Muscle": ("Muscle - Skeletal",),
    "Nerve": ("Nerve - Tibial",),
    "Salivary Gland": ("Minor Salivary Gland",),
    "Skin": (
        "Skin - Not Sun Exposed (Suprapubic)",
        "Skin - Sun Exposed (Lower leg)",
        "Cells - Cultured fibroblasts",
    ),
    "Small Intestine": ("Small Intestine - Terminal Ileum",),
    "Bone Marrow": ("Cells - Leukemia cell line (CML)",),
}
SAMPLE_COLUMNS = ("SAMPID", "SMATSSCR", "SMCENTER", "SMRIN", "SMTS", "SMTSD", "SMAFRZE")


@dataclass(frozen=True)
class SimulationSummary:
    out: Path
    n_genes: int
    n_transcripts: int
    n_coding_transcripts: int
    n_samples: int  # samples with expression (columns of the GCT)
    chromosome_lengths: dict[str, int]
    variance_shares: dict[str, float]
    oracle_r2: float
    oracle_r2_by_modality: dict[str, float]


def _sample_ids(rng: np.random.Generator, tissues: list[str]) -> list[str]:
    """Unique GTEx-like ids, e.g. GTEX-1A2B-0011-R10a-SM-ABCDE (the R part for brain only)."""
    alphabet = np.array(list(string.digits + string.ascii_uppercase))
    donors = ["".join(rng.choice(alphabet, int(rng.integers(4, 6)))) for _ in range(12)]
    ids: list[str] = []
    for i, tissue in enumerate(tissues):
        donor = donors[int(rng.integers(len(donors)))]
        region = f"-R{int(rng.integers(1, 12))}a" if tissue == "Brain" else ""
        ids.append(f"GTEX-{donor}-{i + 1:04d}{region}-SM-{''.join(rng.choice(alphabet, 5))}")
    return ids


def _samples(rng: np.random.Generator, tissues: tuple[str, ...]) -> pl.DataFrame:
    smts = [t for t in tissues for _ in range(int(rng.integers(3, 5)))] + [OTHER_TISSUE] * 2
    excluded = [tissues[int(i)] for i in rng.integers(0, len(tissues), 3)]
    all_smts = smts + excluded
    counters: dict[str, int] = {}
    smtsd = []
    for tissue in all_smts:
        details = DETAILED_TISSUES.get(tissue, (tissue,))
        smtsd.append(details[counters.get(tissue, 0) % len(details)])
        counters[tissue] = counters.get(tissue, 0) + 1
    n = len(all_smts)
    return pl.DataFrame(
        {
            "SAMPID": _sample_ids(rng, all_smts),
            "SMATSSCR": rng.integers(0, 3, n).astype(str),
            "SMCENTER": rng.choice(["B1", "C1", "D1"], n),
            "SMRIN": np.round(rng.uniform(6, 9.5, n), 1).astype(str),
            "SMTS": all_smts,
            "SMTSD": smtsd,
            "SMAFRZE": ["RNASEQ"] * len(smts) + ["EXCLUDE"] * len(excluded),
        }
    )


def _write_gct(
    path: Path, ids: list[tuple[str, str]], sample_ids: list[str], tpm: np.ndarray
) -> None:
    """GCT 1.2; tpm: [transcripts, samples]."""
    # mtime=0: the same seed gives byte-identical files (gzip stores a timestamp otherwise).
    with (
        gzip.GzipFile(path, "wb", compresslevel=6, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="ascii") as out,
    ):
        out.write(f"#1.2\n{len(ids)}\t{len(sample_ids)}\n")
        out.write("\t".join(["transcript_id", "gene_id", *sample_ids]) + "\n")
        for (transcript_id, gene_id), values in zip(ids, tpm):
            out.write("\t".join([transcript_id, gene_id, *(f"{v:.2f}" for v in values)]) + "\n")


def _tissue_means(
    tpm: np.ndarray, sample_tissues: list[str], tissues: tuple[str, ...]
) -> np.ndarray:
    """log1p of the per-tissue mean TPM [transcripts, tissues], as `build` computes targets."""
    tissue_of = np.array(sample_tissues)
    return np.stack([np.log1p(tpm[:, tissue_of == t].mean(axis=1)) for t in tissues], axis=1)


def simulate_study(
    out: Path, n_genes: int | None = None, seed: int = 0, family: RuleFamily | None = None
) -> SimulationSummary:
    """Write a simulated study to `out` (must not exist or be empty); deterministic for a seed.
    The rules are drawn from `family` (default: `RuleFamily()`) with the seed."""
    out = Path(out)
    n_genes = DEMO_N_GENES if n_genes is None else n_genes
    if n_genes < 2:
        raise IsoformerError(f"--n-genes must be at least 2, got {n_genes}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IsoformerError(
            f"{out} already exists and is not an empty directory; choose another --out"
        )
    family = family or RuleFamily()
    rng = np.random.default_rng(seed)
    rules = draw_rules(family, rng)
    # The background grammar has a stream of its own: every draw of `rng` stays as it would be
    # without it (the same genes, motifs, noise), only intronic and intergenic bases differ.
    background_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    grammar = draw_background(family.background, rules, background_rng)
    planter = BackgroundPlanter(grammar, background_rng)

    genes = [design_gene(rng, rules, family, coding=rng.random() < 0.8, background=planter)
             for _ in range(n_genes)]
    rules = rules.calibrated([t.protein for g in genes for t in g.transcripts])
    n_chromosomes = int(np.clip(round(n_genes / 40), 2, 8))
    chromosomes, placed = place_genes(rng, genes, n_chromosomes)
    chromosomes = _plant_intergenic(planter, chromosomes, placed)
    n_tissues = len(rules.tissues)
    gene_effects = (rng.normal(0.0, rules.gene_sd, (len(placed), 1))
                    + rng.normal(0.0, rules.gene_tissue_sd, (len(placed), n_tissues)))

    truth: dict[str, dict] = {}
    occurrences = {m.name: {"planted": 0, "counted": 0} for m in rules.promoter_motifs}
    for g, gene_effect in zip(placed, gene_effects):
        for transcript, transcript_id in zip(g.gene.transcripts, g.transcript_ids):
            window = _window(chromosomes[g.chrom], g.tss(transcript), g.strand)
            features = sequence_features(window, transcript.rna, transcript.protein, rules)
            components = expression_components(features, gene_effect, rules)
            for name, planted in g.gene.planted_promoters[transcript.first_exon].items():
                occurrences[name]["planted"] += planted
                occurrences[name]["counted"] += features.promoter_motifs[name]
            expected = log_tpm(components, rules)
            truth[transcript_id] = {
                "gene_id": g.gene_id,
                "transcript_type": transcript.transcript_type,
                "features": dataclasses.asdict(features),
                "protein": transcript.protein,
                "components": {name: components[name].round(6).tolist() for name in COMPONENTS},
                "log_tpm": expected.tolist(),
            }
            truth[transcript_id]["expression"] = noise_free_expression(expected).tolist()
    stacked = {
        name: np.array([t["components"][name] for t in truth.values()]) for name in COMPONENTS
    }
    shares = variance_shares(stacked)

    samples = _samples(rng, rules.tissues)
    with_data = samples.filter(pl.col("SMAFRZE") == "RNASEQ")
    tissue_index = {t: i for i, t in enumerate(rules.tissues)}
    log_expected = np.array([t["log_tpm"] for t in truth.values()])  # [transcripts, tissues]
    # The other tissue's samples follow the mean profile; `build` ignores them.
    columns = [
        log_expected[:, tissue_index[t]] if t in tissue_index else log_expected.mean(axis=1)
        for t in with_data["SMTS"]
    ]
    sd = rules.sample_log_sd
    noise = rng.normal(0.0, sd, (len(truth), len(columns))) - sd**2 / 2
    tpm = np.round(np.exp(np.stack(columns, axis=1) + noise), 2)
    observed = _tissue_means(tpm, with_data["SMTS"].to_list(), rules.tissues)
    from isoformer.metrics import mean_metrics  # torch and torchmetrics: loaded only to score

    noise_free = np.array([t["expression"] for t in truth.values()])
    oracle = mean_metrics(noise_free, observed, rules.tissues)
    oracle_by_modality = {
        modality: mean_metrics(
            oracle_expression(stacked, [modality], rules.intercept), observed, rules.tissues
        )
        for modality in MODALITIES
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the study is an ordinary output directory
    try:
        write_fasta(tmp / "genome.fa", chromosomes)
        write_gtf(tmp / "annotation.gtf", placed, rng)
        _write_gct(
            tmp / "transcript_tpm.gct.gz",
            [(k, v["gene_id"]) for k, v in truth.items()],
            with_data["SAMPID"].to_list(),
            tpm,
        )
        samples.write_csv(tmp / "sample_attributes.txt", separator="\t")
        document = {
            "format_version": TRUTH_FORMAT_VERSION,
            "seed": seed,
            "n_genes": n_genes,
            "tissues": list(rules.tissues),
            "family": family.to_json(),
            "rules": rules.to_json(),
            "variance_shares": shares,
            "oracle": oracle,
            "oracle_by_modality": oracle_by_modality,
            "promoter_occurrences": occurrences,
            "background": {**grammar.to_json(), **planter.counts()},
            "near_edge_genes": near_edge_genes(placed, chromosomes),
            "transcripts": truth,
        }
        (tmp / "truth.json").write_text(
            json.dumps(document, separators=(",", ":")), encoding="utf-8"
        )
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    summary = SimulationSummary(
        out=out,
        n_genes=n_genes,
        n_transcripts=len(truth),
        n_coding_transcripts=sum(bool(t["protein"]) for t in truth.values()),
        n_samples=len(with_data),
        chromosome_lengths={k: len(v) for k, v in chromosomes.items()},
        variance_shares=shares,
        oracle_r2=oracle["r2"],
        oracle_r2_by_modality={m: v["r2"] for m, v in oracle_by_modality.items()},
    )
    log.info(
        "simulated %d genes, %d transcripts (%d coding), %d samples -> %s",
        n_genes,
        summary.n_transcripts,
        summary.n_coding_transcripts,
        summary.n_samples,
        out,
    )
    log.info(
        "background grammar: %d sites (%s) over %d intronic and intergenic kb",
        sum(planter.sites.values()),
        ", ".join(f"{k} {v}" for k, v in sorted(planter.by_region.items())) or "off",
        planter.searched_bases // 1000,
    )
    log.info(
        "variance shares: %s; oracle R2 %.3f (%s)",
        ", ".join(f"{k} {v:.2f}" for k, v in shares.items()),
        oracle["r2"],
        ", ".join(f"{m} alone {v:.3f}" for m, v in summary.oracle_r2_by_modality.items()),
    )
    return summary


def _plant_intergenic(
    planter: BackgroundPlanter, chromosomes: dict[str, str], placed: list[PlacedGene]
) -> dict[str, str]:
    """Each chromosome with background sites planted between its gene loci (a locus spans its
    promoter flank to its downstream flank, so no promoter region is touched)."""
    loci: dict[str, list[tuple[int, int]]] = {name: [] for name in chromosomes}
    for g in placed:
        loci[g.chrom].append(g.to_genome(0, len(g.gene.locus)))
    planted = {}
    for name, sequence in chromosomes.items():
        gaps, previous = [], 0
        for start, end in sorted(loci[name]):
            gaps.append((previous, start))
            previous = end
        gaps.append((previous, len(sequence)))
        planted[name] = planter.plant_intervals(
            sequence, [(start, end) for start, end in gaps if end > start], "intergenic"
        )
    return planted


def _window(chromosome: str, tss: int, strand: str) -> str:
    """The TSS-centred window of Genome.window, from the in-memory chromosome."""
    from isoformer.data.genome import reverse_complement

    half = PROMOTER_WINDOW // 2
    start = tss - half if strand == "+" else tss + half + 1 - PROMOTER_WINDOW
    inner = chromosome[max(start, 0) : max(start + PROMOTER_WINDOW, 0)]
    padded = "N" * (max(start, 0) - start) + inner
    padded += "N" * (PROMOTER_WINDOW - len(padded))
    return padded.upper() if strand == "+" else reverse_complement(padded.upper())


def read_truth(path: str | Path) -> dict:
    """truth.json as a dict (keys in the module docstring)."""
    path = Path(path)
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise IsoformerError(f"{path}: cannot read the simulation truth ({err})") from None
    if truth.get("format_version") != TRUTH_FORMAT_VERSION:
        raise IsoformerError(
            f"{path}: truth format {truth.get('format_version')!r}, expected {TRUTH_FORMAT_VERSION}"
        )
    return truth
