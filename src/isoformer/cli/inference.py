"""Inference commands: evaluate, predict, variant-effect."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isoformer.constants import INFERENCE_PRECISIONS


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
    p.add_argument("--cache", type=Path, default=None,
                   help="embedding cache of the run's frozen encoders (`embed`): records whose "
                   "inputs it holds skip those encoders")


def _run_predict(args: argparse.Namespace) -> int:
    from isoformer.training.predict import predict_file

    summary = predict_file(
        args.run, args.input, args.output, batch_size=args.batch_size,
        devices=args.devices or args.device, precision=args.precision,
        buffer_size=args.buffer_size, progress=not args.no_progress, cache=args.cache,
    )
    if summary.n_failed:
        print(
            f"isoformer predict: {summary.n_failed} of {summary.n_records} records failed "
            f"(see their 'error' field in {summary.output})",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_variant_effect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "variant-effect",
        help="score VCF alleles per (variant, transcript) and tissue: predicted alt - ref "
        "log(1+TPM) through the DNA window, RNA and protein each changes",
        epilog="Writes OUT (one row per allele and transcript it touches: consequence, protein "
        "change, modalities changed, delta_mean, one column per tissue) and OUT.summary.json "
        "(what was read, skipped and written).",
    )
    p.add_argument("--run", type=Path, required=True, help="run directory from `train`")
    p.add_argument("--data", type=Path, required=True,
                   help="dataset directory from `build` (its transcripts and exon structure)")
    p.add_argument("--vcf", type=Path, required=True, help="VCF, plain or bgzipped (.vcf[.gz])")
    p.add_argument("--out", type=Path, required=True,
                   help="table to write: .tsv or .parquet (the format follows the extension)")
    p.add_argument("--fasta", type=Path, default=None, help="genome FASTA (default: the dataset's)")
    p.add_argument("--transcripts", default=None,
                   help="comma-separated transcript ids to score (default: all of the dataset)")
    p.add_argument("--strict", action="store_true",
                   help="a REF that differs from the genome is an error (default: counted and "
                   "skipped)")
    _add_inference_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress display")


def _run_variant_effect(args: argparse.Namespace) -> int:
    from isoformer.analysis.variant_effect import score_variants
    from isoformer.analysis.variant_effect_output import summary_path

    transcripts = None if args.transcripts is None else [
        name.strip() for name in args.transcripts.split(",") if name.strip()]
    summary = score_variants(
        args.run, args.data, args.vcf, args.out, fasta=args.fasta, transcripts=transcripts,
        strict=args.strict, batch_size=args.batch_size, device=args.device,
        precision=args.precision, progress=not args.no_progress,
    )
    print(f"{summary.records} records, {summary.alleles} alleles: {summary.rows} rows "
          f"(skipped: {summary.symbolic} symbolic, {summary.ref_equal_alt} ALT equal to REF, "
          f"{summary.ref_mismatches} REF mismatches, {summary.no_transcript} touching no "
          f"transcript, {summary.transcript_ablations} transcripts deleted whole)")
    print(f"written: {summary.output}, {summary_path(summary.output)}")
    return 0


COMMANDS = {
    "evaluate": (_add_evaluate, _run_evaluate),
    "predict": (_add_predict, _run_predict),
    "variant-effect": (_add_variant_effect, _run_variant_effect),
}
