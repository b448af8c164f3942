"""What the tiny models learn on freshly simulated studies: one demo per seed, one table each.

    python benchmarks/simulated_studies.py --seeds 0 1 2 3 4 5 --out /tmp/studies [field=value ...]

Each seed draws its own rules (motifs, profiles, features; `isoformer.data.rule_family`), so
nothing is tuned to one study. Per seed it runs `isoformer demo` (simulate, build, train the full
and single-modality tiny models, fit the k-mer baseline, score each on held-out genes beside the
oracle R2 of its sequences) and prints the table; then a summary over seeds: the full model's
margin over the k-mer baseline and over the best single modality, and each single-modality
model's share of its oracle R2 (the issue's targets: > 0, clearly > 0, >= 0.5 for DNA and RNA).
Overrides (e.g. training.lr=1e-3) apply to every deep model. With --pretrain, each seed's
three encoders are first pre-trained on its own study by `isoformer pretrain` (the recipe of
docs/ablations: 4,000 steps for DNA and RNA, 2,000 for protein, lr 2e-3) and every deep model
starts from them (`init=pretrained`); e.g. `--pretrain model.encoders.rna.train_mode=lora`.
Written: OUT/seed_<n>/ (the demo directories, and pretrained/<modality>/ with --pretrain),
OUT/studies.md and OUT/studies.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from isoformer.analysis.demo import (
    BASELINE_MODEL,
    FULL_MODEL,
    DemoResult,
    prepare_demo_out,
    run_demo,
    score_demo_models,
    simulate_demo_dataset,
    summary_markdown,
)
from isoformer.constants import MODALITIES

PRETRAIN_STEPS = {"dna": 4000, "rna": 4000, "protein": 2000}
PRETRAIN_LR = 2e-3


def pretrained_demo(out: Path, seed: int, n_genes: int | None,
                    overrides: tuple[str, ...]) -> DemoResult:
    """The demo on seed's study with its three encoders pre-trained on that study first."""
    from isoformer.training.pretrain import pretrain

    prepare_demo_out(out, overwrite=True)
    study, dataset = simulate_demo_dataset(out, n_genes=n_genes, seed=seed)
    starts = []
    for modality in MODALITIES:
        checkpoint = out / "pretrained" / modality
        pretrain(modality, preset="tiny", out=checkpoint, data=dataset,
                 max_steps=PRETRAIN_STEPS[modality], lr=PRETRAIN_LR, progress=False)
        starts += [f"model.encoders.{modality}.init=pretrained",
                   f"model.encoders.{modality}.checkpoint={checkpoint}"]
    return score_demo_models(out, study, dataset, seed, overrides=(*starts, *overrides),
                             progress=False)


def _shares(result: DemoResult) -> dict[str, float]:
    """Test R2 over oracle R2 of each single-modality model."""
    return {row.model: row.r2 / row.oracle_r2 for row in result.rows
            if len(row.modalities) == 1 and row.oracle_r2 > 0}


def summary_table(results: dict[int, tuple[DemoResult, float]]) -> str:
    lines = [
        "| seed | full R2 | k-mer R2 | full - k-mer | full - best single | DNA / oracle | "
        "RNA / oracle | protein / oracle | minutes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, (result, seconds) in results.items():
        r2 = {row.model: row.r2 for row in result.rows}
        shares = _shares(result)
        lines.append(
            f"| {seed} | {r2[FULL_MODEL]:.3f} | {r2[BASELINE_MODEL]:.3f} | "
            f"{result.baseline_margin:+.3f} | {min(result.margins.values()):+.3f} | "
            f"{shares['DNA only']:.2f} | {shares['RNA only']:.2f} | {shares['protein only']:.2f} | "
            f"{seconds / 60:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-genes", type=int, default=None, help="default: the demo's")
    parser.add_argument("--pretrain", action="store_true",
                        help="pre-train each seed's encoders on its study first")
    args, overrides = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING)

    results: dict[int, tuple[DemoResult, float]] = {}
    sections = []
    for seed in args.seeds:
        start = time.perf_counter()
        if args.pretrain:
            result = pretrained_demo(args.out / f"seed_{seed}", seed, args.n_genes,
                                     tuple(overrides))
        else:
            result = run_demo(args.out / f"seed_{seed}", n_genes=args.n_genes, seed=seed,
                              overrides=tuple(overrides), overwrite=True, progress=False)
        results[seed] = (result, time.perf_counter() - start)
        sections.append(f"## seed {seed}\n\n{summary_markdown(result)}")
        print(sections[-1], flush=True)
    table = summary_table(results)
    print(table)
    overrides_line = " ".join(["--pretrain"] * args.pretrain + overrides) or "none"
    text = f"# simulated studies (overrides: {overrides_line})\n\n{table}\n\n" + "\n".join(sections)
    (args.out / "studies.md").write_text(text, encoding="utf-8")
    (args.out / "studies.json").write_text(json.dumps({
        "overrides": overrides,
        "pretrain": args.pretrain,
        "seeds": {str(seed): {"seconds": seconds, "baseline_margin": result.baseline_margin,
                              "margins": result.margins, "oracle_shares": _shares(result),
                              "rows": [row.__dict__ | {"modalities": list(row.modalities)}
                                       for row in result.rows]}
                  for seed, (result, seconds) in results.items()},
    }, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
