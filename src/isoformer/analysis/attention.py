"""Where the RNA encoder's heads look, by transcript region: fine-tuned against a baseline.

The paper's Appendix C analysis: for every layer and head of the RNA encoder (NT-v2), the share of
attention landing on the 5'UTR, the CDS and the 3'UTR, normalised by region length, in the
fine-tuned encoder (the run's) and in a baseline encoder (`pretrained`: the encoder as training
started it; or another run's), compared per layer / head / region with a paired t-test across
transcripts and a Benjamini-Hochberg correction over all layer x head x region tests.

    summary = attention_analysis("runs/paper", "data/gtex", "runs/paper/attention")

Definitions, per transcript, layer and head (attention weights A[q, k], rows summing to 1):
- Tokens are mapped back to transcript bases (`NucleotideTransformerEncoder.token_spans`): the
  encoder's crop (RNA keeps its 3' end), 6-mers from the start of the kept sequence, remainder and
  N bases one token each. `<cls>` and padding cover no base.
- Token -> region: a token spanning a region boundary is split by base share (a 6-mer with 2 bases
  of 5'UTR and 4 of CDS counts 2/6 to the 5'UTR and 4/6 to the CDS): w[k, r] = bases of token k in
  region r / bases of token k. `<cls>` belongs to no region.
- Attention mass on region r: m_r = mean over query tokens q (every sequence token; not `<cls>`,
  not padding) of sum_k A[q, k] w[k, r]. The masses of the three regions plus the mass on `<cls>`
  sum to 1 (`mass_*` columns).
- Region size: n_r = sum_k w[k, r], the region's kept length in tokens.
- Normalised share: s_r = (m_r / n_r) / sum_r' (m_r' / n_r'), attention per token of the region,
  as a share over the three regions (`share_*` columns): uniform attention over the sequence tokens
  gives 1/3 to each region whatever their lengths, attention all on CDS tokens gives the CDS 1.
Transcripts enter only when all three regions are present in the tokens both encoders keep (no
CDS, region lengths that do not add up to the RNA, a missing UTR, or a region cropped away leaves
one out, counted by reason in the summary), so every test is paired over the same transcripts.

Outputs in `out`: attention_regions.csv (layer 1-based, head 0-based, region, share_finetuned,
share_baseline, difference, t, p, q, significant, mass_finetuned, mass_baseline, n_transcripts),
attention_<region>.png (layers x heads coloured by the difference, significant cells marked) and
attention_summary.json (inputs, counts, definitions).
"""

from __future__ import annotations

import csv
import logging
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.stats
import torch
from matplotlib.figure import Figure

from isoformer.data.dataset import read_transcripts
from isoformer.encoders.base import SequenceEncoder
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.model.prediction import resolve_device

log = logging.getLogger(__name__)

REGIONS: tuple[str, ...] = ("5utr", "cds", "3utr")
REGION_LABELS = {"5utr": "5'UTR", "cds": "CDS", "3utr": "3'UTR"}
PRETRAINED = "pretrained"
TABLE_FILE = "attention_regions.csv"
SUMMARY_FILE = "attention_summary.json"
TABLE_COLUMNS = ("layer", "head", "region", "share_finetuned", "share_baseline", "difference",
                 "t", "p", "q", "significant", "mass_finetuned", "mass_baseline", "n_transcripts")
TOKEN_RULE = ("tokens mapped to transcript bases after the encoder's crop; a token spanning a "
              "region boundary is split by base share; <cls> belongs to no region")
SHARE_RULE = ("mass m_r = mean over sequence-token queries of the attention on region r; size "
              "n_r = region's kept length in tokens; share s_r = (m_r / n_r) / sum over regions")


def figure_file(region: str) -> str:
    return f"attention_{region}.png"


@dataclass
class AttentionSummary:
    out: Path
    table: Path  # attention_regions.csv
    figures: dict[str, Path]  # region -> heat map
    baseline: str  # "pretrained" or the baseline run's directory
    n_transcripts: int
    excluded: dict[str, int]  # reason -> transcripts of the split left out
    layers: int
    heads: int
    significant: dict[str, int] = field(default_factory=dict)  # region -> significant cells


# ---- token -> region ----


def region_bounds(utr5_length: int, cds_length: int, utr3_length: int) -> np.ndarray:
    """[3, 2] half-open base intervals of the 5'UTR, the CDS and the 3'UTR in the transcript."""
    edges = np.cumsum([0, utr5_length, cds_length, utr3_length])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def token_region_weights(spans: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Token spans [L, 2] (base intervals, empty for special tokens) and region intervals [R, 2]
    -> float64 [L, R]: the share of each token's bases in each region (a row sums to 1 on a token
    inside the regions, 0 on an empty span)."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    start = np.maximum(spans[:, None, 0], bounds[None, :, 0])
    end = np.minimum(spans[:, None, 1], bounds[None, :, 1])
    overlap = np.clip(end - start, 0, None).astype(np.float64)  # [L, R] bases
    length = (spans[:, 1] - spans[:, 0]).astype(np.float64)[:, None]
    return np.divide(overlap, length, out=np.zeros_like(overlap), where=length > 0)


def region_attention_mass(weights: torch.Tensor, key_regions: torch.Tensor,
                          query_mask: torch.Tensor) -> torch.Tensor:
    """Attention [B, H, L, L] (rows: queries), key regions [B, L, R], query mask [B, L] ->
    [B, H, R]: the mean over the masked-in queries of the attention mass on each region."""
    mass = weights.float() @ key_regions.float()[:, None]  # [B, H, L, R]
    queries = query_mask.float()[:, None, :, None]  # [B, 1, L, 1]
    return (mass * queries).sum(dim=2) / queries.sum(dim=2).clamp(min=1.0)


def normalized_shares(mass: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Masses [..., R] and region sizes in tokens [..., R] (broadcast) -> shares [..., R]: the
    attention per token of each region, as a share over the regions (NaN where a size is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.asarray(mass, dtype=np.float64) / np.asarray(sizes, dtype=np.float64)
        return density / density.sum(axis=-1, keepdims=True)


# ---- statistics ----


def paired_t_test(finetuned: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """scipy's paired t-test, with the degenerate cases made explicit: no difference at all is
    t 0, p 1; a constant non-zero difference is t +-inf, p 0."""
    difference = np.asarray(finetuned, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if np.all(difference == 0):
        return 0.0, 1.0
    if np.all(difference == difference[0]):
        return math.copysign(math.inf, difference[0]), 0.0
    result = scipy.stats.ttest_rel(finetuned, baseline)
    return float(result.statistic), float(result.pvalue)


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) of one family of tests, in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if not len(p):
        return p
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]  # monotone from the largest p down
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(q, 1.0)
    return adjusted


# ---- encoders ----


def _checked(encoder: SequenceEncoder, where: str) -> SequenceEncoder:
    if not encoder.exposes_attention or not hasattr(encoder, "token_spans"):
        raise IsoformerError(
            f"{where}: the RNA encoder ({encoder.config.kind}) cannot map its attention to "
            "transcript regions (only nucleotide_transformer can)"
        )
    return encoder


def _open_run(run_dir: str | Path) -> Any:
    from isoformer.training.run import Run

    run = Run.open(run_dir)
    if run.is_baseline:
        raise IsoformerError(f"{run_dir}: a k-mer baseline run has no attention to analyse")
    if "rna" not in run.modalities:
        raise IsoformerError(f"{run_dir}: the model has no RNA encoder to analyse")
    return run


def run_rna_encoder(run_dir: str | Path, device: str | torch.device = "cpu") -> SequenceEncoder:
    """The RNA encoder of a trained run (its best model)."""
    model = _open_run(run_dir).load_model(device=device)
    return _checked(model.encoders["rna"], str(run_dir))


def initial_rna_encoder(run_dir: str | Path, device: str | torch.device = "cpu"
                        ) -> SequenceEncoder:
    """The run's RNA encoder as training started it: rebuilt from the run's config, from its
    checkpoint (`init: pretrained`) or, for random weights, as `fit.seeded_model` draws them with
    the run's seed (the whole model is rebuilt so the draws come in the training order)."""
    from isoformer.encoders.registry import build_encoder
    from isoformer.model.isoformer import resolve_model_config
    from isoformer.training.fit import seeded_model

    run = _open_run(run_dir)
    model_config = run.config.model
    if model_config.encoders["rna"].init == "pretrained":
        encoder = build_encoder(resolve_model_config(model_config).encoders["rna"])
    else:
        encoder = seeded_model(run.config).encoders["rna"]
    return _checked(encoder, f"{run_dir} (initial weights)").to(resolve_device(device))


@dataclass
class RegionAttention:
    """One encoder's attention by region over N transcripts."""

    mass: np.ndarray  # [N, layers, heads, R]
    sizes: np.ndarray  # [N, R] region sizes in kept tokens

    @property
    def shares(self) -> np.ndarray:  # [N, layers, heads, R]
        return normalized_shares(self.mass, self.sizes[:, None, None, :])


def _key_regions(encoder: SequenceEncoder, rna: Sequence[str],
                 bounds: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [token_region_weights(spans, b)
            for spans, b in zip(encoder.token_spans(rna), bounds, strict=True)]  # type: ignore


@torch.inference_mode()
def encoder_region_attention(encoder: SequenceEncoder, rna: Sequence[str],
                             bounds: Sequence[np.ndarray], batch_size: int = 8) -> RegionAttention:
    """Region masses of every layer and head of `encoder` over the transcripts `rna` with region
    intervals `bounds` (batched by length; one layer's [B, H, L, L] maps alive at a time)."""
    encoder.eval()
    device = next(encoder.parameters()).device
    order = sorted(range(len(rna)), key=lambda i: len(rna[i]))
    mass: list[np.ndarray | None] = [None] * len(rna)
    sizes: list[np.ndarray | None] = [None] * len(rna)
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        sequences = [rna[i] for i in rows]
        inputs = {name: t.to(device) for name, t in encoder.tokenize(sequences).items()}
        regions = _key_regions(encoder, sequences, [bounds[i] for i in rows])
        length = inputs["input_ids"].shape[1]
        key_regions = torch.zeros(len(rows), length, len(REGIONS), dtype=torch.float32)
        for row, weights in enumerate(regions):
            if len(weights) != int(inputs["attention_mask"][row].sum()):
                raise IsoformerError("token spans disagree with the tokenizer")  # a bug, not input
            key_regions[row, : len(weights)] = torch.from_numpy(weights)
        key_regions = key_regions.to(device)
        query_mask = key_regions.sum(-1) > 0  # sequence tokens: not <cls>, not padding

        def reduce(index: int, weights: torch.Tensor) -> torch.Tensor:
            return region_attention_mass(weights, key_regions, query_mask).cpu()

        output = encoder.forward_with_attentions(inputs, reduce=reduce)
        batch_mass = torch.stack(output.attentions, dim=1).double().numpy()  # [B, layers, H, R]
        for row, index in enumerate(rows):
            mass[index] = batch_mass[row]
            sizes[index] = regions[row].sum(axis=0)
    return RegionAttention(np.stack(mass), np.stack(sizes))  # type: ignore[arg-type]


# ---- the analysis ----


def select_transcripts(table: pl.DataFrame, encoders: Sequence[SequenceEncoder]
                       ) -> tuple[list[int], Counter[str]]:
    """Rows of `table` usable by every encoder, and the others counted by reason."""
    excluded: Counter[str] = Counter()
    candidates = []
    for index, row in enumerate(table.select(
            "rna", "utr5_length", "cds_length", "utr3_length").iter_rows()):
        rna, utr5, cds, utr3 = row
        if cds == 0:  # non-coding, or region lengths unknown (all three 0)
            excluded["no_cds"] += 1
        elif utr5 + cds + utr3 != len(rna):
            excluded["region_lengths_differ_from_rna"] += 1
        elif utr5 == 0:
            excluded["no_5utr"] += 1
        elif utr3 == 0:
            excluded["no_3utr"] += 1
        else:
            candidates.append(index)
    rna = table["rna"].to_list()
    bounds = [region_bounds(*row) for row in table.select(
        "utr5_length", "cds_length", "utr3_length").iter_rows()]
    kept = set(candidates)
    for encoder in encoders:
        sizes = _key_regions(encoder, [rna[i] for i in candidates], [bounds[i] for i in candidates])
        for index, weights in zip(candidates, sizes, strict=True):
            if index in kept and (weights.sum(axis=0) == 0).any():
                kept.discard(index)
                excluded["region_cropped_away"] += 1
    return [index for index in candidates if index in kept], excluded


def attention_analysis(
    run: str | Path,
    data_dir: str | Path,
    out: str | Path,
    split: str = "test",
    baseline: str | Path | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    max_transcripts: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> AttentionSummary:
    """Compare the run's RNA encoder attention by region with `baseline` on `split` of `data_dir`
    and write the table, the heat maps and the summary into `out` (see the module docstring).

    `baseline`: "pretrained" (default: the run's encoder before fine-tuning) or another run's
    directory. `max_transcripts`: a random subset (by `seed`) of the usable transcripts. `device`:
    auto, cpu, cuda or cuda:N. `alpha`: the false discovery rate of the significant cells.
    """
    run, data_dir, out = Path(run), Path(data_dir), Path(out)
    if batch_size < 1:
        raise IsoformerError(f"--batch-size must be positive, got {batch_size}")
    if not 0 < alpha < 1:
        raise IsoformerError(f"alpha must be in (0, 1), got {alpha}")
    if max_transcripts is not None and max_transcripts < 2:
        raise IsoformerError(f"--max-transcripts must be at least 2, got {max_transcripts}")
    device = resolve_device(device)
    baseline_name = PRETRAINED if baseline in (None, PRETRAINED) else str(baseline)
    table = read_transcripts(data_dir, split)
    if not table.height:
        raise IsoformerError(f"{data_dir}: the {split} split has no transcripts")
    finetuned = run_rna_encoder(run, device)
    reference = (initial_rna_encoder(run, device) if baseline_name == PRETRAINED
                 else run_rna_encoder(baseline_name, device))

    rows, excluded = select_transcripts(table, [finetuned, reference])
    if max_transcripts is not None and len(rows) > max_transcripts:
        rows = sorted(random.Random(seed).sample(rows, max_transcripts))
    if len(rows) < 2:
        raise IsoformerError(
            f"{data_dir}: {len(rows)} {split} transcript(s) have a 5'UTR, a CDS and a 3'UTR in "
            f"the encoders' tokens (excluded: {dict(excluded) or 'none'}); the paired test needs 2"
        )
    rna = [table["rna"][i] for i in rows]
    bounds = [region_bounds(*table.select("utr5_length", "cds_length", "utr3_length").row(i))
              for i in rows]
    log.info("attention by region: %d %s transcripts, fine-tuned %s vs %s", len(rows), split,
             run, baseline_name)
    tuned = encoder_region_attention(finetuned, rna, bounds, batch_size)
    base = encoder_region_attention(reference, rna, bounds, batch_size)
    if tuned.mass.shape != base.mass.shape:
        raise IsoformerError(
            f"the baseline's RNA encoder has {base.mass.shape[1]} layers x {base.mass.shape[2]} "
            f"heads, the run's {tuned.mass.shape[1]} x {tuned.mass.shape[2]}: not comparable"
        )
    records = compare(tuned, base, alpha)
    out.mkdir(parents=True, exist_ok=True)
    table_path = write_table(records, out / TABLE_FILE)
    layers, heads = tuned.mass.shape[1:3]
    figures = {region: plot_region_heatmap(records, region, layers, heads,
                                           out / figure_file(region), baseline_name)
               for region in REGIONS}
    summary = AttentionSummary(
        out=out, table=table_path, figures=figures, baseline=baseline_name,
        n_transcripts=len(rows), excluded=dict(excluded), layers=layers, heads=heads,
        significant={r: sum(rec["significant"] for rec in records if rec["region"] == r)
                     for r in REGIONS},
    )
    write_json_atomic({
        "run": str(run), "baseline": baseline_name, "data": str(data_dir), "split": split,
        "n_transcripts": len(rows), "excluded": dict(excluded), "layers": layers,
        "heads": heads, "alpha": alpha, "max_transcripts": max_transcripts, "seed": seed,
        "significant": summary.significant, "token_to_region": TOKEN_RULE, "share": SHARE_RULE,
        "test": "paired t-test across transcripts (scipy.stats.ttest_rel) per layer, head and "
                "region; Benjamini-Hochberg over all layer x head x region tests",
        "layer_numbering": "layer 1-based (1 = first transformer layer), head 0-based",
    }, out / SUMMARY_FILE)
    return summary


def compare(tuned: RegionAttention, base: RegionAttention, alpha: float = 0.05
            ) -> list[dict[str, Any]]:
    """One record per layer, head and region (TABLE_COLUMNS), BH-corrected over all of them."""
    tuned_shares, base_shares = tuned.shares, base.shares
    _, layers, heads, _ = tuned_shares.shape
    records = []
    for layer in range(layers):
        for head in range(heads):
            for r, region in enumerate(REGIONS):
                a, b = tuned_shares[:, layer, head, r], base_shares[:, layer, head, r]
                t, p = paired_t_test(a, b)
                records.append({
                    "layer": layer + 1, "head": head, "region": region,
                    "share_finetuned": float(a.mean()), "share_baseline": float(b.mean()),
                    "difference": float(a.mean() - b.mean()), "t": t, "p": p,
                    "mass_finetuned": float(tuned.mass[:, layer, head, r].mean()),
                    "mass_baseline": float(base.mass[:, layer, head, r].mean()),
                    "n_transcripts": len(a),
                })
    q = benjamini_hochberg([record["p"] for record in records])
    for record, value in zip(records, q, strict=True):
        record["q"] = float(value)
        record["significant"] = bool(value < alpha)
    return records


def write_table(records: Sequence[dict[str, Any]], path: Path) -> Path:
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    return path


def plot_region_heatmap(records: Sequence[dict[str, Any]], region: str, layers: int, heads: int,
                        path: Path, baseline: str) -> Path:
    """Layers (rows) x heads (columns) coloured by the share difference, fine-tuned minus
    baseline (blue: less, red: more attention per token), significant cells marked with *."""
    difference = np.zeros((layers, heads))
    significant = np.zeros((layers, heads), dtype=bool)
    for record in records:
        if record["region"] == region:
            cell = record["layer"] - 1, record["head"]
            difference[cell] = record["difference"]
            significant[cell] = record["significant"]
    limit = float(np.abs(difference).max()) or 1e-6
    fig = Figure(figsize=(max(4.0, 0.35 * heads + 2.0), max(3.0, 0.3 * layers + 1.5)))
    ax = fig.subplots()
    image = ax.imshow(difference, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                      origin="lower")
    for layer, head in zip(*np.nonzero(significant), strict=True):
        ax.text(head, layer, "*", ha="center", va="center", color="black", fontsize=10)
    ax.set_xticks(np.arange(heads), [str(h) for h in range(heads)])
    ax.set_yticks(np.arange(layers), [str(layer + 1) for layer in range(layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    label = "pre-trained" if baseline == PRETRAINED else "baseline"
    ax.set_title(f"{REGION_LABELS[region]}: attention share, fine-tuned - {label}\n"
                 "(* significant after Benjamini-Hochberg)", fontsize=9)
    fig.colorbar(image, ax=ax, label="difference in normalised share", format="%.2g")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path
