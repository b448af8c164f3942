"""Do predicted variant effects move expression the way a simulated study's truth says?

    report = variant_truth("demo/study", "demo/dataset", ["demo/runs/dna-rna-protein"], "truth")

On held-out transcripts (the test split) of a study written by `isoformer simulate`, single-base
variants are placed where the expression rules read the sequence (`data/expression_model.py`):

- `rna_element`: the middle base of an occurrence of a scored RNA motif (the AU-rich element
  ATTTA and the other elements) in the 3'UTR;
- `protein_feature`: a missense change, in one base of the codon, of a residue a scored protein
  feature counts (charged, cysteine or hydrophobic residues) into one it does not;
- `promoter_motif`: the middle base of an occurrence of a promoter motif in the scored promoter
  region of the transcript's own TSS window.

They are written to a VCF and scored by `score_variants` (`isoformer variant-effect`), and for
every (variant, transcript) row the truth's own effect is computed by applying the rules to the
same ALT sequences (`variant_inputs`) with the transcript's gene effect: noise-free alt minus ref
in log(1 + TPM), averaged over tissues like `delta_mean`. Reported per class and run, over the
rows the truth moves by more than `min_effect` and that change a modality the run reads (a
DNA-only model cannot see a 3'UTR variant): the share whose predicted delta has the truth's
sign, the Pearson correlation of predicted and true deltas, and whether the targeted
transcript's row carries the consequence the placement intends (3_prime_UTR_variant,
missense_variant with the intended `p.` change, upstream_gene_variant). Written to OUT (absent
or empty; written whole or not at all):
`variants.vcf`, `<run>.parquet` (the scored table), `rows.csv` (every row with its truth),
`variant_truth.md` / `.json` and `variant_truth.png` (predicted vs true delta per class and run).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from isoformer.analysis.variant_effect import score_variants
from isoformer.data.dataset import read_metadata, read_transcripts, resolve_fasta
from isoformer.data.expression_model import (
    PROTEIN_FEATURES,
    ExpressionRules,
    expression_components,
    log_tpm,
    noise_free_expression,
    sequence_features,
)
from isoformer.data.gencode import translate
from isoformer.data.genome import Genome, reverse_complement
from isoformer.data.variants import TranscriptStructure, variant_inputs
from isoformer.data.vcf import Variant
from isoformer.errors import IsoformerError
from isoformer.files import atomic_directory, atomic_output, write_json_atomic
from isoformer.training.run import Run

log = logging.getLogger(__name__)

CLASSES = ("rna_element", "protein_feature", "promoter_motif")
INTENDED_CONSEQUENCE = {"rna_element": "3_prime_UTR_variant",
                        "protein_feature": "missense_variant",
                        "promoter_motif": "upstream_gene_variant"}
BASES = "ACGT"


@dataclass(frozen=True)
class PlacedVariant:
    variant: Variant
    kind: str  # one of CLASSES
    transcript_id: str  # the transcript it was placed on
    element: str  # motif or feature name
    protein_change: str  # intended, for protein_feature; "" otherwise


# ------------------------------------------------------------------------------------ placement

def genome_position(tx: TranscriptStructure, rna_index: int) -> int:
    """Genome coordinate of the RNA's base `rna_index` (5'->3' on the transcript's strand)."""
    offset = rna_index if tx.strand == "+" else len(tx.rna) - 1 - rna_index
    for start, end in tx.exons:
        if offset < end - start:
            return start + offset
        offset -= end - start
    raise ValueError(f"{tx.transcript_id}: RNA index {rna_index} is past its {len(tx.rna)} bases")


def _snv(tx: TranscriptStructure, position: int, strand_base: str, genome: Genome) -> Variant:
    """The SNV at genome `position` that reads `strand_base` on the transcript's strand."""
    alt = strand_base if tx.strand == "+" else reverse_complement(strand_base)
    ref = genome.fetch(tx.chrom, position, position + 1)
    return Variant(tx.chrom, position + 1, ref, alt, line=0)


def _other_base(base: str) -> str:
    """A fixed substitute (transversion), so the placement is deterministic."""
    return {"A": "C", "C": "A", "G": "T", "T": "G"}.get(base, "A")


def _rna_element_variant(tx: TranscriptStructure, rules: ExpressionRules,
                         genome: Genome) -> PlacedVariant | None:
    utr3_start = tx.utr5_length + tx.cds_length
    for motif in rules.rna_motifs:
        index = tx.rna.find(motif.sequence, utr3_start)
        if index < 0:
            continue
        middle = index + len(motif.sequence) // 2
        base = _other_base(tx.rna[middle])
        return PlacedVariant(_snv(tx, genome_position(tx, middle), base, genome), "rna_element",
                             tx.transcript_id, motif.name, "")
    return None


def _protein_feature_variant(tx: TranscriptStructure, rules: ExpressionRules,
                             genome: Genome) -> PlacedVariant | None:
    counted = {residue for feature in rules.protein_features
               for residue in "".join(PROTEIN_FEATURES[feature.name])}
    for residue_index, residue in enumerate(tx.protein):
        if residue not in counted or residue_index == 0:  # the first codon is the start
            continue
        codon_start = tx.frame_start + 3 * residue_index
        codon = tx.rna[codon_start:codon_start + 3]
        for offset in range(3):
            for base in BASES:
                if base == codon[offset]:
                    continue
                mutant = translate(codon[:offset] + base + codon[offset + 1:])
                if mutant in ("*", "X") or mutant in counted:
                    continue
                variant = _snv(tx, genome_position(tx, codon_start + offset), base, genome)
                return PlacedVariant(variant, "protein_feature", tx.transcript_id,
                                     residue, f"p.{residue}{residue_index + 1}{mutant}")
    return None


def _promoter_motif_variant(tx: TranscriptStructure, rules: ExpressionRules, genome: Genome,
                            dna_length: int) -> PlacedVariant | None:
    window = genome.window(tx.chrom, tx.tss, tx.strand, dna_length)
    region_start, region_end = (dna_length // 2 + r for r in rules.promoter_region)
    window_start, window_end = tx.window_span(dna_length)
    for motif in rules.promoter_motifs:
        for pattern in (motif.sequence, reverse_complement(motif.sequence)):
            index = window.find(pattern, region_start, region_end)
            if index < 0:
                continue
            middle = index + len(pattern) // 2
            position = window_start + middle if tx.strand == "+" else window_end - 1 - middle
            base = _other_base(window[middle])
            return PlacedVariant(_snv(tx, position, base, genome), "promoter_motif",
                                 tx.transcript_id, motif.name, "")
    return None


def place_variants(structures: Sequence[TranscriptStructure], rules: ExpressionRules,
                   genome: Genome, dna_length: int, per_class: int) -> list[PlacedVariant]:
    """Up to `per_class` variants of each class, one per gene and class, in genome order; a
    variant already placed (another class or gene at the same base and ALT) is not placed again,
    so each VCF row means one placement."""
    placed: list[PlacedVariant] = []
    ids: set[str] = set()
    for kind in CLASSES:
        genes: set[str] = set()
        for tx in structures:
            if len(genes) == per_class:
                break
            if tx.gene_id in genes or not tx.protein:
                continue
            if kind == "rna_element":
                found = _rna_element_variant(tx, rules, genome)
            elif kind == "protein_feature":
                found = _protein_feature_variant(tx, rules, genome)
            else:
                found = _promoter_motif_variant(tx, rules, genome, dna_length)
            if found is not None and found.variant.variant_id not in ids:
                genes.add(tx.gene_id)
                ids.add(found.variant.variant_id)
                placed.append(found)
    order = {chrom: i for i, chrom in enumerate(genome.chroms)}
    return sorted(placed, key=lambda p: (order[p.variant.chrom], p.variant.pos))


def write_vcf(placed: Sequence[PlacedVariant], genome: Genome, path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        handle.write("##fileformat=VCFv4.2\n")
        for chrom in genome.chroms:
            handle.write(f"##contig=<ID={chrom},length={genome.chrom_length(chrom)}>\n")
        handle.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for p in placed:
            v = p.variant
            handle.write(f"{v.chrom}\t{v.pos}\t{p.kind}:{p.element}:{p.transcript_id}\t"
                         f"{v.ref}\t{v.alt}\t.\tPASS\t.\n")


# ------------------------------------------------------------------------------------- the truth

def true_expression(dna: str, rna: str, protein: str, gene_effect: np.ndarray,
                    rules: ExpressionRules) -> np.ndarray:
    """The rules' noise-free log(1 + TPM) [tissues] of these sequences."""
    features = sequence_features(dna, rna, protein, rules)
    return noise_free_expression(log_tpm(expression_components(features, gene_effect, rules),
                                         rules))


def true_delta_mean(p: PlacedVariant, tx: TranscriptStructure, truth: dict,
                    rules: ExpressionRules, genome: Genome, dna_length: int) -> float:
    """The rules' ALT minus REF noise-free log(1 + TPM) of `p` on `tx`, mean over tissues."""
    inputs = variant_inputs(p.variant, tx, genome, dna_length)
    gene = np.asarray(truth["transcripts"][tx.transcript_id]["components"]["gene"])
    ref = true_expression(genome.window(tx.chrom, tx.tss, tx.strand, dna_length), tx.rna,
                          tx.protein, gene, rules)
    alt = true_expression(inputs.dna, inputs.rna, inputs.protein, gene, rules)
    return float(np.mean(alt - ref))


def truth_rows(placed: Sequence[PlacedVariant], structures: dict[str, TranscriptStructure],
               scored: pl.DataFrame, truth: dict, rules: ExpressionRules, genome: Genome,
               dna_length: int, modalities: Sequence[str],
               true_deltas: dict[tuple[str, str, int], float] | None = None) -> pl.DataFrame:
    """`scored` (one run's variant-effect table) joined with each row's class and true delta,
    and whether it changes one of the run's `modalities`. `true_deltas` keeps the true deltas
    across calls: the runs of one comparison share their (variant, transcript) pairs."""
    true_deltas = {} if true_deltas is None else true_deltas
    by_id = {p.variant.variant_id: p for p in placed}
    rows = []
    for row in scored.select("variant_id", "transcript_id", "consequence", "protein_change",
                             "modalities_changed", "delta_mean").iter_rows(named=True):
        p = by_id[row["variant_id"]]
        tx = structures[row["transcript_id"]]
        key = (p.variant.variant_id, tx.transcript_id, dna_length)
        if key not in true_deltas:
            true_deltas[key] = true_delta_mean(p, tx, truth, rules, genome, dna_length)
        targeted = tx.transcript_id == p.transcript_id
        changed = set(row["modalities_changed"].split(","))
        rows.append({**row, "kind": p.kind, "element": p.element, "targeted": targeted,
                     "intended": targeted and _as_intended(p, row),
                     "read": bool(changed & set(modalities)),
                     "true_delta_mean": true_deltas[key]})
    return pl.DataFrame(rows)


def _as_intended(p: PlacedVariant, row: dict) -> bool:
    return (row["consequence"] == INTENDED_CONSEQUENCE[p.kind]
            and row["protein_change"] == p.protein_change)


# -------------------------------------------------------------------------------------- summary

def class_summary(rows: pl.DataFrame, min_effect: float) -> list[dict]:
    """Per class: rows, rows the truth moves that the run reads, share of those with the truth's
    sign, Pearson r (None where undefined)."""
    summary = []
    for kind in CLASSES:
        of_kind = rows.filter(pl.col("kind") == kind)
        moved = of_kind.filter((pl.col("true_delta_mean").abs() > min_effect) & pl.col("read"))
        predicted = moved["delta_mean"].to_numpy()
        true = moved["true_delta_mean"].to_numpy()
        summary.append({
            "kind": kind,
            "variants": of_kind["variant_id"].n_unique(),
            "rows": len(of_kind),
            "moved_rows": len(moved),
            # A prediction that does not move has sign 0: never the truth's.
            "right_sign": float(np.mean(np.sign(predicted) == np.sign(true))) if len(moved)
            else None,
            "pearson": _pearson(predicted, true),
            "targeted_as_intended": int(of_kind["intended"].sum()),
            "targeted": int(of_kind["targeted"].sum()),
        })
    return summary


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """None where it is undefined: fewer than 3 rows, or a side that never varies."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_markdown(results: dict[str, list[dict]], min_effect: float) -> str:
    lines = ["| run | class | variants | rows | rows moved and read | right sign | Pearson r | "
             "targeted rows as intended |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for run, summary in results.items():
        for s in summary:
            lines.append(f"| {run} | {s['kind']} | {s['variants']} | {s['rows']} | "
                         f"{s['moved_rows']} | {_number(s['right_sign'])} | "
                         f"{_number(s['pearson'])} | "
                         f"{s['targeted_as_intended']} / {s['targeted']} |")
    lines.append("")
    lines.append(f"Rows moved and read: |true delta_mean| > {min_effect} log(1 + TPM) and a "
                 "modality the run reads is changed. Right sign: the predicted delta_mean "
                 "has the truth's sign. Targeted rows as "
                 "intended: the transcript the variant was placed on got the intended "
                 "consequence (and protein change).")
    return "\n".join(lines) + "\n"


def plot_truth(frames: dict[str, pl.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(frames), len(CLASSES), squeeze=False,
                             figsize=(3.6 * len(CLASSES), 3.2 * len(frames)))
    for r, (run, rows) in enumerate(frames.items()):
        for c, kind in enumerate(CLASSES):
            ax = axes[r][c]
            of_kind = rows.filter((pl.col("kind") == kind) & pl.col("read"))
            ax.scatter(of_kind["true_delta_mean"], of_kind["delta_mean"], s=8, alpha=0.6)
            if of_kind.is_empty():
                ax.text(0.5, 0.5, "the run reads no\nmodality these change", ha="center",
                        va="center", transform=ax.transAxes, fontsize=8, color="grey")
            ax.axhline(0, color="grey", lw=0.5)
            ax.axvline(0, color="grey", lw=0.5)
            ax.set_title(f"{run}: {kind}", fontsize=9)
            ax.set_xlabel("true delta (mean over tissues)", fontsize=8)
            ax.set_ylabel("predicted delta", fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------------------- driver

def _test_structures(dataset_dir: Path) -> Iterator[TranscriptStructure]:
    for row in read_transcripts(dataset_dir, "test").iter_rows(named=True):
        yield TranscriptStructure.from_row(row)


def variant_truth(study_dir: str | Path, dataset_dir: str | Path, runs: Sequence[str | Path],
                  out: str | Path, *, per_class: int = 100, min_effect: float = 0.01,
                  device: str = "auto", progress: bool = True) -> dict[str, list[dict]]:
    """Place, score and compare (module docstring); returns the per-class summary per run."""
    study_dir, dataset_dir, out = Path(study_dir), Path(dataset_dir), Path(out)
    truth_path = study_dir / "truth.json"
    if not truth_path.is_file():
        raise IsoformerError(f"{truth_path} not found: --study must be a `simulate` output")
    truth = json.loads(truth_path.read_text())
    rules = ExpressionRules.from_json(truth["rules"])
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IsoformerError(f"{out} already exists and is not empty; choose another --out")
    opened = [Run.open(run) for run in runs]
    dna_length = min(run.dna_length for run in opened)
    with atomic_directory(out) as tmp:
        results = _score_and_compare(truth, rules, dataset_dir, opened, dna_length, tmp,
                                     per_class=per_class, min_effect=min_effect, device=device,
                                     progress=progress)
    return results


def _score_and_compare(truth: dict, rules: ExpressionRules, dataset_dir: Path, opened: list[Run],
                       dna_length: int, out: Path, *, per_class: int, min_effect: float,
                       device: str, progress: bool) -> dict[str, list[dict]]:
    structures = list(_test_structures(dataset_dir))
    fasta = resolve_fasta(dataset_dir, read_metadata(dataset_dir))
    results, frames = {}, {}
    true_deltas: dict[tuple[str, str, int], float] = {}  # shared by the runs
    with Genome(fasta) as genome:
        placed = place_variants(structures, rules, genome, dna_length, per_class)
        log.info("placed %s", ", ".join(
            f"{sum(p.kind == k for p in placed)} {k}" for k in CLASSES))
        vcf = out / "variants.vcf"
        write_vcf(placed, genome, vcf)
        test_ids = [tx.transcript_id for tx in structures]
        by_id = {tx.transcript_id: tx for tx in structures}
        for run in opened:
            name = run.directory.name
            table = out / f"{name}.parquet"
            score_variants(run, dataset_dir, vcf, table, transcripts=test_ids, device=device,
                           progress=progress)
            rows = truth_rows(placed, by_id, pl.read_parquet(table), truth, rules, genome,
                              run.dna_length, run.modalities, true_deltas)
            frames[name] = rows
            results[name] = class_summary(rows, min_effect)
    every_row = pl.concat([rows.with_columns(pl.lit(name).alias("run"))
                           for name, rows in frames.items()])
    with atomic_output(out / "rows.csv") as tmp:
        every_row.write_csv(tmp)
    with atomic_output(out / "variant_truth.md") as tmp:
        tmp.write_text(summary_markdown(results, min_effect))
    write_json_atomic({"min_effect": min_effect, "per_class": per_class, "runs": results},
                      out / "variant_truth.json")
    plot_truth(frames, out / "variant_truth.png")
    return results

