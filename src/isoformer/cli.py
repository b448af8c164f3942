"""Command-line interface: thin subcommands that parse arguments and call one library function each.

Every subcommand registers itself through `_add_<name>` and runs through `_run_<name>`; heavy
libraries (torch, polars) are imported inside the run functions so `isoformer --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from isoformer import __version__
from isoformer.constants import DEFAULT_DNA_LENGTH, INFERENCE_PRECISIONS
from isoformer.errors import IsoformerError

log = logging.getLogger("isoformer")


# ----------------------------------------------------------------------------------------- data
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="write a simulated study in the real GTEx/GENCODE/FASTA formats"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--n-genes", type=int, default=None, help="number of genes (default: the demo size)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn rules and sequences")
    _add_rules_option(p)


def _add_rules_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules", type=Path, default=None,
        help="YAML overriding fields of the rule family (isoformer.data.rule_family)",
    )


def _run_simulate(args: argparse.Namespace) -> int:
    from isoformer.data.rule_family import load_rule_family
    from isoformer.data.simulate import simulate_study

    simulate_study(args.out, n_genes=args.n_genes, seed=args.seed,
                   family=load_rule_family(args.rules))
    return 0


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build", help="build the IsoFormer dataset from FASTA + GTF + GCT + sample attributes"
    )
    p.add_argument(
        "--fasta",
        type=Path,
        required=True,
        help="genome FASTA (plain or bgzipped, indexed on demand)",
    )
    p.add_argument("--gtf", type=Path, required=True, help="GENCODE GTF (plain or .gz)")
    p.add_argument("--tpm", type=Path, required=True, help="GTEx transcript TPM GCT (plain or .gz)")
    p.add_argument(
        "--samples", type=Path, required=True, help="GTEx sample attributes (SAMPID, SMTS)"
    )
    p.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    p.add_argument(
        "--tissues",
        nargs="+",
        default=None,
        help="SMTS tissue names (default: the 30 of IsoFormer)",
    )
    p.add_argument(
        "--dna-length", type=int, default=DEFAULT_DNA_LENGTH, help="default DNA window (bp)"
    )
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0, help="seed of the gene-level split")
    p.add_argument(
        "--protein-coding-only", action="store_true", help="keep protein_coding transcripts only"
    )


def _run_build(args: argparse.Namespace) -> int:
    from isoformer.data.build import build_dataset

    build_dataset(
        fasta=args.fasta,
        gtf=args.gtf,
        tpm=args.tpm,
        samples=args.samples,
        out=args.out,
        tissues=args.tissues,
        dna_length=args.dna_length,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        protein_coding_only=args.protein_coding_only,
    )
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write dataset records as JSON lines (the prediction input format)"
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--output", type=Path, required=True, help="JSONL file to write")
    p.add_argument("--split", default=None, help="train, valid or test (default: all)")
    p.add_argument("--limit", type=int, default=None, help="write at most N records")
    p.add_argument(
        "--run", type=Path, default=None,
        help="a training run: write DNA windows at its length (what `predict --run` expects)",
    )
    p.add_argument(
        "--dna-length", type=int, default=None,
        help="DNA window in bp (default: the --run's, else the dataset's)",
    )
    p.add_argument(
        "--fasta",
        type=Path,
        default=None,
        help="genome FASTA (default: the one the dataset was built from)",
    )


def _run_export(args: argparse.Namespace) -> int:
    from isoformer.data.export import export_jsonl

    dna_length = args.dna_length
    if dna_length is None and args.run is not None:
        from isoformer.training.run import Run

        dna_length = Run.open(args.run).dna_length
    export_jsonl(
        args.data,
        args.output,
        split=args.split,
        limit=args.limit,
        dna_length=dna_length,
        fasta=args.fasta,
    )
    return 0


def _add_import_instadeep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-instadeep", help="convert InstaDeep's published GTEx_final.csv into a dataset"
    )
    p.add_argument("--csv", type=Path, required=True, help="GTEx_final.csv")
    p.add_argument(
        "--fasta", type=Path, required=True, help="hg38 FASTA the CSV's coordinates refer to"
    )
    p.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="OURS=THEIRS",
        help="override a column mapping, e.g. --column transcript_id=transcript_id_gtex",
    )


def _run_import_instadeep(args: argparse.Namespace) -> int:
    from isoformer.data.instadeep import import_instadeep, parse_column_overrides

    import_instadeep(args.csv, args.fasta, args.out, columns=parse_column_overrides(args.column))
    return 0


# ------------------------------------------------------------------------------------- training
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an IsoFormer run (resumes RUN/checkpoints/last.ckpt when present)",
        epilog="Any config field can follow as an override (see `isoformer.model.config`). Running "
        "train again on an existing RUN with the same config resumes it; a different config is "
        "refused unless --overwrite.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--preset", default="tiny",
                   help="tiny | tiny-nt | paper | paper-nt (default: tiny)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create or resume")
    p.add_argument("--modalities", default=None, help="comma-separated subset of dna,rna,protein")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    p.add_argument("--max-epochs", type=int, default=None, help="default: the preset's")
    p.add_argument("--overwrite", action="store_true", help="replace a run whose config differs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--devices", default=None,
                   help="devices per node: a count or auto (sets training.devices; default: 1)")
    p.add_argument("--num-nodes", default=None, help="nodes (sets training.num_nodes; default: 1)")
    p.add_argument("--strategy", default=None, choices=("auto", "ddp", "fsdp", "deepspeed"),
                   help="Lightning strategy (sets training.strategy; see docs/distributed.md)")
    p.add_argument("--cache", type=Path, default=None,
                   help="embedding cache from `embed` (same preset and overrides): read the "
                   "frozen encoders' states instead of running them")


def _modalities(text: str | None) -> list[str] | None:
    """--modalities dna,rna -> ["dna", "rna"]; None stays None (the config's)."""
    from isoformer.constants import MODALITIES

    if text is None:
        return None
    modalities = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise IsoformerError(
            f"--modalities {text!r}: choose a non-empty subset of {','.join(MODALITIES)}"
        )
    return modalities


def _run_train(args: argparse.Namespace) -> int:
    from isoformer.training.fit import train

    run = train(
        args.data,
        args.preset,
        args.out,
        # --devices, --num-nodes, --strategy: overrides of training.*, after those given freely.
        overrides=[*args.overrides, *(
            f"training.{name}={value}" for name, value in (
                ("devices", args.devices), ("num_nodes", args.num_nodes),
                ("strategy", args.strategy)) if value is not None)],
        modalities=_modalities(args.modalities),
        seed=args.seed,
        max_epochs=args.max_epochs,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        cache=args.cache,
    )
    print(f"run written to {run.directory}")
    return 0


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="cache the frozen encoders' token states of a dataset for `train --cache`",
        epilog="Config overrides follow as in train; the encoders to cache must be frozen, e.g. "
        "model.encoders.dna.train_mode=frozen. Running embed again on CACHE resumes it.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--preset", default="tiny", help="the preset `train` will use (default: tiny)")
    p.add_argument("--out", type=Path, required=True, help="cache directory to create or resume")
    p.add_argument("--tokens", type=int, default=None,
                   help="average-pool each sequence to at most K tokens (sets model.pool_tokens, "
                   "which train must then share)")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"),
                   help="storage type of the states (default: float16)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--overwrite", action="store_true", help="replace a cache built for another "
                   "model or dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_embed(args: argparse.Namespace) -> int:
    from isoformer.training.embed import embed

    summary = embed(args.data, args.preset, args.out, overrides=args.overrides,
                    tokens=args.tokens, dtype=args.dtype, batch_size=args.batch_size,
                    overwrite=args.overwrite, progress=not args.no_progress)
    entries = ", ".join(f"{m} {n} ({summary.computed[m]} new)"
                        for m, n in summary.entries.items())
    print(f"cache written to {summary.directory}: {entries}; "
          f"{summary.size_bytes / 1e6:.1f} MB")
    return 0


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="fit the k-mer ridge baseline and write it as a run evaluate and predict accept",
        epilog="Fields of KmerBaselineConfig can follow as overrides, e.g. dna_k=5 "
        "dna_length=2048 alphas=1,10,100. Penalties are chosen per tissue on the validation split.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--kind", default="kmer", help="kmer (per-tissue ridge on k-mer counts)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create")
    p.add_argument("--modalities", default=None, help="comma-separated subset of dna,rna,protein")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")


def _run_baseline(args: argparse.Namespace) -> int:
    from isoformer.training.baseline import fit_baseline

    run = fit_baseline(args.data, args.out, kind=args.kind, overrides=args.overrides,
                       modalities=_modalities(args.modalities), overwrite=args.overwrite)
    print(f"run written to {run.directory}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a run on a dataset split: metrics JSON + figures in RUN/"
    )
    p.add_argument("--run", type=Path, required=True, help="run directory from `train`")
    p.add_argument("--data", type=Path, required=True, help="dataset directory from `build`")
    p.add_argument("--split", default="test", help="train, valid or test (default: test)")
    _add_inference_options(p)
    p.add_argument(
        "--num-workers", type=int, default=0,
        help="DataLoader workers reading DNA windows from the FASTA (default: 0, in process)",
    )
    p.add_argument("--fasta", type=Path, default=None, help="genome FASTA (default: the dataset's)")
    p.add_argument("--cache", type=Path, default=None,
                   help="embedding cache of the run's frozen encoders on this dataset (`embed`)")


def _add_inference_options(p: argparse.ArgumentParser, several_devices: bool = False) -> None:
    """--device, --batch-size, --precision; with `several_devices`, --devices instead of
    --device when asked (one model replica per device)."""
    devices = p.add_mutually_exclusive_group() if several_devices else p
    devices.add_argument(
        "--device", default="auto",
        help="auto (the GPU when there is one), cpu, cuda or cuda:N (default: auto)",
    )
    if several_devices:
        devices.add_argument(
            "--devices", default=None,
            help="several devices, one model replica on each, sharing the batches: a "
            "comma-separated list (cuda:0,cuda:1; cpu,cpu) or a count of CUDA devices (2)",
        )
    p.add_argument("--batch-size", type=int, default=16, help="records per forward pass")
    p.add_argument(
        "--precision", choices=INFERENCE_PRECISIONS, default="32",
        help="32: float32 throughout; bf16: encoders and fusion under bfloat16 autocast, the head "
        "and de-standardisation in float32 (for GPUs; default: 32)",
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from isoformer.training.evaluate import evaluate_run

    report = evaluate_run(
        args.run, args.data, split=args.split, batch_size=args.batch_size, device=args.device,
        precision=args.precision, num_workers=args.num_workers, fasta=args.fasta,
        cache=args.cache,
    )

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    mean = report["mean"]
    print(
        f"{args.split}: {report['n_transcripts']} transcripts, {len(report['per_tissue'])} tissues"
    )
    print(
        f"mean over tissues: R2 {fmt(mean['r2'])}  Spearman {fmt(mean['spearman'])}  "
        f"Pearson {fmt(mean['pearson'])}"
    )
    print(f"isoform-ranking Spearman: {fmt(report['isoform_spearman'])}")
    print(
        f"written: {args.run / f'metrics_{args.split}.json'}, {args.run / 'r2_per_tissue.png'}, "
        f"{args.run / f'predicted_vs_observed_{args.split}.png'}"
    )
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict expression per tissue for JSON/JSONL records",
        epilog="Exit code 1 when some records failed; each has an 'error' field.",
    )
    p.add_argument("--run", type=Path, required=True, help="run directory from `train`")
    p.add_argument(
        "--input", type=Path, required=True, help="records (.jsonl, or .json: object or list)"
    )
    p.add_argument("--output", type=Path, required=True, help="JSONL file to write")
    _add_inference_options(p, several_devices=True)
    p.add_argument(
        "--buffer-size", type=int, default=None,
        help="records read, sorted by length into batches and predicted at a time; memory "
        "grows with it, not with the input (default: 64 batches)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display")


def _run_predict(args: argparse.Namespace) -> int:
    from isoformer.training.predict import predict_file

    summary = predict_file(
        args.run, args.input, args.output, batch_size=args.batch_size,
        devices=args.devices or args.device, precision=args.precision,
        buffer_size=args.buffer_size, progress=not args.no_progress,
    )
    if summary.n_failed:
        print(
            f"isoformer predict: {summary.n_failed} of {summary.n_records} records failed "
            f"(see their 'error' field in {summary.output})",
            file=sys.stderr,
        )
        return 1
    return 0


# ----------------------------------------------------------------------------------------- demo
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
    _add_rules_option(p)


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


COMMANDS = {
    "simulate": (_add_simulate, _run_simulate),
    "build": (_add_build, _run_build),
    "export": (_add_export, _run_export),
    "import-instadeep": (_add_import_instadeep, _run_import_instadeep),
    "embed": (_add_embed, _run_embed),
    "train": (_add_train, _run_train),
    "baseline": (_add_baseline, _run_baseline),
    "evaluate": (_add_evaluate, _run_evaluate),
    "predict": (_add_predict, _run_predict),
    "demo": (_add_demo, _run_demo),
}


# Commands that run Lightning: importing it attaches its own console handler to the "lightning"
# logger, whose records also reach ours on the root, so every Lightning line would print twice.
LIGHTNING_COMMANDS = frozenset({"train", "demo"})


def _configure_logging(command: str, verbose: bool) -> None:
    """One handler, on the root logger: every line once, in one format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if command in LIGHTNING_COMMANDS:
        import lightning  # noqa: F401  (attaches the handler removed below)

        for handler in list(logging.getLogger("lightning").handlers):
            logging.getLogger("lightning").removeHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isoformer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"isoformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Only these take free-form config overrides; elsewhere they are a usage error.
    if extra and args.command not in ("embed", "train", "baseline", "demo"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    _configure_logging(args.command, args.verbose)
    try:
        return COMMANDS[args.command][1](args)
    except IsoformerError as err:
        print(f"isoformer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable / unwritable files: name the file, no traceback
        print(
            f"isoformer {args.command}: error: {err.filename or ''}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"isoformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
