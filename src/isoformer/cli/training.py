"""Training commands: train, embed, baseline, pretrain."""

from __future__ import annotations

import argparse
from pathlib import Path

from isoformer.errors import IsoformerError


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
    p.add_argument("--out", type=Path, default=None,
                   help="run directory to create or resume (required unless --dry-run)")
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
    p.add_argument("--dry-run", action="store_true",
                   help="print the memory estimate per device (with --gpu-memory: the "
                   "micro-batch x accumulation that fits), the FLOPs per training sample and the "
                   "GPU-hours of an epoch, and exit; nothing is downloaded, trained or written")
    p.add_argument("--gpu-memory", default=None, metavar="SIZE",
                   help="GPU memory per device for --dry-run, e.g. 80GB, 80GiB, 24G")
    p.add_argument("--gpu-tflops", default=None, type=float, metavar="TFLOPS",
                   help="sustained TFLOP/s per GPU assumed for --dry-run's GPU-hours (default: "
                   "400, about 40%% of an H100's or H200's bf16 dense peak of 989)")


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
    from isoformer.training.fit import resolve_config, train

    # --devices, --num-nodes, --strategy: overrides of training.*, after those given freely.
    overrides = [*args.overrides, *(
        f"training.{name}={value}" for name, value in (
            ("devices", args.devices), ("num_nodes", args.num_nodes),
            ("strategy", args.strategy)) if value is not None)]
    if args.dry_run:
        from isoformer.training.memory import DEFAULT_GPU_TFLOPS, estimate_memory, parse_size

        budget = parse_size(args.gpu_memory) if args.gpu_memory is not None else None
        config = resolve_config(args.data, args.preset, overrides,
                                modalities=_modalities(args.modalities), seed=args.seed,
                                max_epochs=args.max_epochs)
        estimate = estimate_memory(
            config, gpu_memory_bytes=budget, train_samples=_train_samples(args.data),
            gpu_tflops=DEFAULT_GPU_TFLOPS if args.gpu_tflops is None else args.gpu_tflops)
        print(estimate.format())
        return 0 if budget is None or estimate.proposal is not None else 1
    for option, value in (("--gpu-memory", args.gpu_memory), ("--gpu-tflops", args.gpu_tflops)):
        if value is not None:
            raise IsoformerError(f"{option} goes with --dry-run")
    if args.out is None:
        raise IsoformerError("--out RUN is required (unless --dry-run)")
    run = train(
        args.data,
        args.preset,
        args.out,
        overrides=overrides,
        modalities=_modalities(args.modalities),
        seed=args.seed,
        max_epochs=args.max_epochs,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        cache=args.cache,
    )
    print(f"run written to {run.directory}")
    return 0


def _train_samples(data: Path) -> int:
    """The training split's size: as the metadata of `build` and `import-instadeep` records it,
    else its rows counted."""
    from isoformer.data.dataset import read_metadata, read_transcripts

    recorded = read_metadata(data).get("split", {}).get("transcripts", {}).get("train")
    return int(recorded) if recorded is not None else read_transcripts(data, "train").height


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


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    from isoformer.constants import MODALITIES

    p = sub.add_parser(
        "pretrain",
        help="masked-language-model pretraining of one encoder; DIR loads as its checkpoint",
        epilog="Config overrides follow as in train: model.* fields of the preset and pretrain.* "
        "fields of isoformer.training.pretrain.PretrainConfig (e.g. pretrain.length=2048). "
        "Train on it with model.encoders.<modality>.init=pretrained "
        "model.encoders.<modality>.checkpoint=DIR. Running pretrain again on DIR resumes it; "
        "only --max-steps may change (docs/pretraining.md).",
    )
    p.add_argument("--modality", required=True, choices=MODALITIES,
                   help="dna: genome windows (NT-v2 6-mers, or masked bases for Enformer); rna: "
                   "the dataset's transcripts (NT-v2); protein: its proteins (ESM-2)")
    p.add_argument("--preset", default="tiny",
                   help="the preset whose encoder is pretrained: tiny | tiny-nt | paper | "
                   "paper-nt (default: tiny)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--fasta", type=Path, default=None,
                        help="genome FASTA (dna only): random N-free windows")
    source.add_argument("--data", type=Path, default=None,
                        help="dataset from `build`: its train split's RNAs or proteins (valid "
                        "split held out), or for dna the genome it was built from")
    p.add_argument("--out", type=Path, required=True,
                   help="directory to create or resume (the encoder checkpoint)")
    p.add_argument("--max-steps", type=int, default=None, help="default: 2000")
    p.add_argument("--batch-size", type=int, default=None, help="default: 16")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 5e-4)")
    p.add_argument("--seed", type=int, default=None, help="default: 0")
    p.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a pretraining with other settings in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_pretrain(args: argparse.Namespace) -> int:
    from isoformer.training.pretrain import pretrain

    summary = pretrain(
        args.modality, args.preset, args.out, fasta=args.fasta, data=args.data,
        overrides=args.overrides, max_steps=args.max_steps, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress,
        device=args.device,
    )
    print(summary.describe())
    print(f"written: {args.out} (checkpoint, summary.json, metrics.csv, loss_curve.png)")
    return 0


COMMANDS = {
    "embed": (_add_embed, _run_embed),
    "train": (_add_train, _run_train),
    "baseline": (_add_baseline, _run_baseline),
    "pretrain": (_add_pretrain, _run_pretrain),
}
