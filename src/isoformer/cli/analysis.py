"""Analysis commands: demo, ablate (the paper's tables), attention (Appendix C), attribute,
variant-truth (variant effects against a simulated study's truth)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isoformer.cli.data import add_rules_option


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulate, build, train the full and single-modality tiny models, compare",
        epilog="With --check, exit code 1 when the full model does not beat every single-modality "
        "model by the margin in DIR/summary.md. Config overrides (e.g. training.lr=3e-4) apply to "
        "all deep models.",
    )
    p.add_argument("--out", type=Path, required=True, help="demo directory to create")
    p.add_argument(
        "--n-genes", type=int, default=None, help="simulated genes (default: the demo size)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation, split and training")
    p.add_argument("--max-epochs", type=int, default=None, help="default: the tiny preset's")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when fusion does not beat every single modality by the margin")
    add_rules_option(p)


def _run_demo(args: argparse.Namespace) -> int:
    from isoformer.analysis.demo import run_demo, summary_markdown
    from isoformer.data.rule_family import load_rule_family

    result = run_demo(
        args.out,
        n_genes=args.n_genes,
        seed=args.seed,
        max_epochs=args.max_epochs,
        overrides=tuple(args.overrides),
        overwrite=args.overwrite,
        progress=not args.no_progress,
        family=load_rule_family(args.rules),
    )
    print(summary_markdown(result))
    print(
        f"written: {args.out / 'summary.md'}, {args.out / 'summary.json'}, "
        f"{args.out / 'demo_r2.png'}"
    )
    return 1 if args.check and not result.fusion_wins else 0


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate", help="the paper's comparisons over seeds: modalities (Table 2), DNA encoders "
        "(3), aggregation (4), pre-trained vs random encoders (5)",
        epilog="Config overrides (field=value) apply to every run. Finished runs are skipped, so "
        "an interrupted study resumes; the tables are rebuilt from what finished.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--preset", default="tiny",
                   help="tiny or paper family (the encoders study uses its -nt / -borzoi twins)")
    p.add_argument("--study", required=True,
                   choices=("modalities", "encoders", "aggregation", "pretraining", "all"))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per setting (default: 5)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory: <study>.csv, <study>.md, <study>.png, runs/")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODALITY=DIR",
                   help="pretraining study: an `isoformer pretrain` checkpoint, e.g. rna=ckpt/rna")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_ablate(args: argparse.Namespace) -> int:
    from isoformer.analysis.ablation import ablate
    from isoformer.errors import IsoformerError

    checkpoints = {}
    for entry in args.checkpoint:
        modality, _, directory = entry.partition("=")
        if modality not in ("dna", "rna", "protein") or not directory:
            raise IsoformerError(f"--checkpoint {entry!r}: expected dna|rna|protein=DIR")
        checkpoints[modality] = directory
    results = ablate(args.data, args.preset, args.study, args.seeds, args.out,
                     overrides=args.overrides, checkpoints=checkpoints,
                     progress=not args.no_progress)
    for result in results:
        print((args.out / f"{result.study}.md").read_text(encoding="utf-8") if result.rows
              else f"{result.study}: no finished run")
        print("written: " + ", ".join(str(path) for path in result.files))
    return 0


def _add_attention(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention", help="RNA encoder attention by transcript region (5'UTR, CDS, 3'UTR), "
        "fine-tuned vs a baseline, per layer and head: CSV + one heat map per region")
    p.add_argument("--run", type=Path, required=True, help="run directory from `train`")
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--out", type=Path, required=True,
                   help="directory: attention_regions.csv, attention_{5utr,cds,3utr}.png, "
                   "attention_summary.json")
    p.add_argument("--split", default="test", help="train, valid or test (default: test)")
    p.add_argument("--baseline", default="pretrained",
                   help="pretrained (the run's RNA encoder before fine-tuning, rebuilt from its "
                   "config and seed) or another run directory (default: pretrained)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=8, help="transcripts per forward pass")
    p.add_argument("--max-transcripts", type=int, default=None,
                   help="a random subset of this many transcripts (default: all usable ones)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="false discovery rate (Benjamini-Hochberg) of the marked cells")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-transcripts subset")


def _run_attention(args: argparse.Namespace) -> int:
    from isoformer.analysis.attention import attention_analysis

    summary = attention_analysis(
        args.run, args.data, args.out, split=args.split, baseline=args.baseline,
        batch_size=args.batch_size, device=args.device, max_transcripts=args.max_transcripts,
        alpha=args.alpha, seed=args.seed,
    )
    excluded = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.excluded.items()))
    print(f"{args.split}: {summary.n_transcripts} transcripts (excluded: {excluded or 'none'}), "
          f"{summary.layers} layers x {summary.heads} heads, fine-tuned vs {summary.baseline}")
    print("significant cells: " + ", ".join(f"{r} {n}" for r, n in summary.significant.items()))
    print(f"written: {summary.table}, " + ", ".join(str(p) for p in summary.figures.values()))
    return 0


def _add_attribute(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribute", help="per-position attribution of the predicted expression of JSON/JSONL "
        "records: in-silico mutagenesis or gradient x input; scores (.npz) + one PNG per record",
        epilog="Exit code 1 when some records were unreadable or invalid (listed in "
        "DIR/summary.json). ISM score: minus the mean effect of mutating a position away, so "
        "positions whose letter raises the target are positive.",
    )
    p.add_argument("--run", type=Path, required=True, help="run directory from `train`")
    p.add_argument("--input", type=Path, required=True,
                   help="records (.jsonl, or .json: object or list), as `predict` reads them")
    p.add_argument("--modality", required=True, choices=("dna", "rna", "protein"))
    p.add_argument("--method", required=True, choices=("ism", "saliency"),
                   help="ism: every alternative base / residue at every position; saliency: "
                   "gradient x input on the encoder's one-hot input or token embeddings")
    p.add_argument("--out", type=Path, required=True,
                   help="directory to create (absent or empty): attributions.npz, "
                   "<record_id>.png, summary.json")
    p.add_argument("--tissue", default=None,
                   help="attribute this tissue's prediction (exact name; default: the mean over "
                   "tissues)")
    p.add_argument("--span", default=None, metavar="A:B",
                   help="positions A..B-1 (0-based) of the modality's sequence only (default: "
                   "all; DNA: the run's window around the TSS)")
    p.add_argument("--device", default="auto",
                   help="auto (the GPU when there is one), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="mutants (ism) or records (saliency) per forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress display")


def _run_attribute(args: argparse.Namespace) -> int:
    from isoformer.analysis.attribution_files import attribute_file

    summary = attribute_file(
        args.run, args.input, args.out, modality=args.modality, method=args.method,
        tissue=args.tissue, span=args.span, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress,
    )
    skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.skipped.items()))
    print(f"{summary.n_attributed} of {summary.n_records} records attributed "
          f"(skipped: {skipped or 'none'}); written: {summary.out}")
    if summary.n_invalid:
        print(f"isoformer attribute: {summary.n_invalid} records were unreadable or invalid (see "
              f"{summary.out / 'summary.json'})", file=sys.stderr)
        return 1
    return 0


def _add_variant_truth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "variant-truth", help="place variants on a simulated study's planted signals (3'UTR "
        "elements, scored residues, promoter motifs), score them with variant-effect and compare "
        "with the simulation's own effect: sign share and correlation per class and run",
    )
    p.add_argument("--study", type=Path, required=True,
                   help="directory written by `simulate` (its truth.json and genome)")
    p.add_argument("--data", type=Path, required=True,
                   help="dataset built from it by `build` (test split transcripts are used)")
    p.add_argument("--run", type=Path, action="append", required=True,
                   help="run directory from `train` or `baseline` (repeat for several)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory: variants.vcf, <run>.parquet, rows.csv, variant_truth.md, "
                   ".json and .png")
    p.add_argument("--per-class", type=int, default=100,
                   help="variants of each class, one per gene (default: 100)")
    p.add_argument("--min-effect", type=float, default=0.01,
                   help="rows whose true delta_mean is smaller are not scored for sign")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress display")


def _run_variant_truth(args: argparse.Namespace) -> int:
    from isoformer.analysis.variant_truth import variant_truth

    variant_truth(args.study, args.data, args.run, args.out, per_class=args.per_class,
                  min_effect=args.min_effect, device=args.device,
                  progress=not args.no_progress)
    print((args.out / "variant_truth.md").read_text(), end="")
    print(f"written: {args.out}")
    return 0


COMMANDS = {
    "demo": (_add_demo, _run_demo),
    "ablate": (_add_ablate, _run_ablate),
    "attention": (_add_attention, _run_attention),
    "attribute": (_add_attribute, _run_attribute),
    "variant-truth": (_add_variant_truth, _run_variant_truth),
}
