"""Data commands: simulate, build, export, import-instadeep."""

from __future__ import annotations

import argparse
from pathlib import Path

from isoformer.constants import DEFAULT_DNA_LENGTH


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="write a simulated study in the real GTEx/GENCODE/FASTA formats"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--n-genes", type=int, default=None, help="number of genes (default: the demo size)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn rules and sequences")
    add_rules_option(p)


def add_rules_option(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the gene-level split (and of the validation genes of a "
                   "chromosome split without --valid-chromosomes)")
    p.add_argument("--split", choices=("gene", "chromosome"), default="gene",
                   help="gene: --val-fraction / --test-fraction of the genes (default); "
                   "chromosome: whole chromosomes held out (--test-chromosomes, "
                   "--valid-chromosomes; neither: GenBio's chr20 valid, chr21 chr22 test)")
    p.add_argument("--test-chromosomes", nargs="+", default=None, metavar="CHROM",
                   help="with --split chromosome: the test chromosomes, named as in the GTF")
    p.add_argument("--valid-chromosomes", nargs="+", default=None, metavar="CHROM",
                   help="with --split chromosome: the validation chromosomes (default with "
                   "--test-chromosomes: --val-fraction of the other chromosomes' genes)")
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
        split=args.split,
        test_chromosomes=args.test_chromosomes,
        valid_chromosomes=args.valid_chromosomes,
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


COMMANDS = {
    "simulate": (_add_simulate, _run_simulate),
    "build": (_add_build, _run_build),
    "export": (_add_export, _run_export),
    "import-instadeep": (_add_import_instadeep, _run_import_instadeep),
}
