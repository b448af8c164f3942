"""Train/valid/test splits of a dataset: by gene (the default) or by whole chromosomes.

Either way all isoforms of a gene share one split.

Gene split (`split_genes`): the genes are sorted, then permuted by numpy's PCG64 generator (never
Python's salted `hash`), so the same gene set and seed give the same split on any machine.
Fractions are of genes, rounded: the first `round(test_fraction * n)` permuted genes are "test",
the next `round(val_fraction * n)` are "valid", the rest "train".

Chromosome split (`assign_chromosome_splits`), the protocol of peers that hold out whole
chromosomes (an encoder's own pre-training may have seen the test genes' neighbourhoods otherwise):
transcripts on the test chromosomes are "test", on the valid chromosomes "valid", everything else
(other autosomes, chrX, chrY, chrM, scaffolds) "train". Without valid chromosomes the validation
genes are drawn from the non-test chromosomes by gene (`val_fraction`, `seed`). Naming neither list
gives GenBio ModelGenerator's split: chr20 valid, chr21 and chr22 test, the rest train (Otari holds
out chr8: `test_chromosomes=["chr8"]`). Names are the annotation's own (GENCODE: chr1, ..., chrM).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

from isoformer.errors import IsoformerError


def split_genes(
    gene_ids: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Gene id -> "train" | "valid" | "test" over the distinct ids of `gene_ids`."""
    for name, fraction in (("val", val_fraction), ("test", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise IsoformerError(f"--{name}-fraction must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise IsoformerError(
            f"--val-fraction + --test-fraction must be below 1 (leave genes to train), got "
            f"{val_fraction} + {test_fraction}"
        )
    genes = sorted(set(gene_ids))
    order = np.random.default_rng(seed).permutation(len(genes))
    n_test = round(test_fraction * len(genes))
    n_valid = round(val_fraction * len(genes))
    names = np.full(len(genes), "train", dtype=object)
    names[order[:n_test]] = "test"
    names[order[n_test : n_test + n_valid]] = "valid"
    return dict(zip(genes, names.tolist(), strict=True))


def assign_splits(
    gene_ids: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """The split of each row, given each row's gene id (see `split_genes`)."""
    by_gene = split_genes(gene_ids, val_fraction, test_fraction, seed)
    return [by_gene[gene] for gene in gene_ids]


SPLIT_METHODS: tuple[str, ...] = ("gene", "chromosome")
# GenBio ModelGenerator's isoform-expression split: chromosomes 1-19 (and the rest) train.
GENBIO_VALID_CHROMOSOMES: tuple[str, ...] = ("chr20",)
GENBIO_TEST_CHROMOSOMES: tuple[str, ...] = ("chr21", "chr22")


def resolve_chromosome_lists(
    test_chromosomes: Sequence[str] | None, valid_chromosomes: Sequence[str] | None
) -> tuple[list[str], list[str] | None]:
    """The test and valid chromosome lists of a chromosome split: GenBio's when neither is named;
    repeats, a chromosome in both lists and valid without test chromosomes are errors. Valid
    `None`: validation genes by fraction from the other chromosomes."""
    if test_chromosomes is None and valid_chromosomes is None:
        return list(GENBIO_TEST_CHROMOSOMES), list(GENBIO_VALID_CHROMOSOMES)
    if not test_chromosomes:
        raise IsoformerError(
            "--split chromosome: name the test chromosomes (--test-chromosomes), or neither list "
            f"for GenBio's split (test {' '.join(GENBIO_TEST_CHROMOSOMES)}, valid "
            f"{' '.join(GENBIO_VALID_CHROMOSOMES)})"
        )
    lists = {"--test-chromosomes": list(test_chromosomes)}
    if valid_chromosomes is not None:
        lists["--valid-chromosomes"] = list(valid_chromosomes)
    for option, names in lists.items():
        repeated = sorted(name for name, n in Counter(names).items() if n > 1)
        if repeated:
            raise IsoformerError(f"{option} lists {', '.join(repeated)} more than once")
    both = sorted(set(test_chromosomes) & set(valid_chromosomes or ()))
    if both:
        raise IsoformerError(
            f"{', '.join(both)} {'is' if len(both) == 1 else 'are'} in both --test-chromosomes "
            "and --valid-chromosomes: a chromosome belongs to one split"
        )
    return list(test_chromosomes), None if valid_chromosomes is None else list(valid_chromosomes)


def check_chromosomes_present(
    named: Sequence[str], available: Collection[str], option: str, source: str = "the annotation"
) -> None:
    """Every chromosome of `named` is in `available`, else an error listing what is there (and the
    other spelling, chr8 for 8 or 8 for chr8, when that one exists)."""
    missing = [name for name in named if name not in available]
    if not missing:
        return
    hints = []
    for name in missing:
        other = name[3:] if name.startswith("chr") else f"chr{name}"
        if other in available:
            hints.append(f"{other} instead of {name}")
    shown = sorted(available, key=_chromosome_order)
    listing = ", ".join(shown[:30]) + (f", ... ({len(shown)} in all)" if len(shown) > 30 else "")
    raise IsoformerError(
        f"{option}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in {source} "
        f"(its chromosomes: {listing or 'none'})"
        + (f"; did you mean {', '.join(hints)}?" if hints else "")
    )


def _chromosome_order(name: str) -> tuple[int, int | str]:
    """chr1 < chr2 < ... < chr22 < chrX < ... : numbered chromosomes first, in number order."""
    bare = name[3:] if name.startswith("chr") else name
    return (0, int(bare)) if bare.isdigit() else (1, bare)


def assign_chromosome_splits(
    gene_ids: Sequence[str],
    chromosomes: Sequence[str],
    test_chromosomes: Sequence[str],
    valid_chromosomes: Sequence[str] | None,
    val_fraction: float = 0.05,
    seed: int = 0,
) -> list[str]:
    """The split of each row by its chromosome (see the module docstring); `valid_chromosomes`
    None: validation genes drawn by `split_genes` (val_fraction, seed) from the train chromosomes.

    Errors: a gene with isoforms on chromosomes of different splits, and an empty train split, or
    test or valid chromosomes that hold none of the rows.
    """
    test, valid = set(test_chromosomes), set(valid_chromosomes or ())
    splits = ["test" if chrom in test else "valid" if chrom in valid else "train"
              for chrom in chromosomes]
    by_gene: dict[str, set[str]] = {}
    for gene, split in zip(gene_ids, splits, strict=True):
        by_gene.setdefault(gene, set()).add(split)
    torn = sorted(gene for gene, names in by_gene.items() if len(names) > 1)
    if torn:
        raise IsoformerError(
            f"{len(torn)} gene(s) have isoforms on chromosomes of different splits (e.g. "
            f"{torn[0]}); a gene must sit in one split"
        )
    if valid_chromosomes is None:
        train_genes = [gene for gene, split in zip(gene_ids, splits) if split == "train"]
        drawn = split_genes(train_genes, val_fraction, 0.0, seed)
        splits = [drawn[gene] if split == "train" else split
                  for gene, split in zip(gene_ids, splits)]
    present = set(splits)
    if "train" not in present:
        valid_rule = (f"valid {' '.join(valid_chromosomes) or 'none'}"
                      if valid_chromosomes is not None
                      else f"valid {val_fraction} of the other chromosomes' genes")
        raise IsoformerError(
            f"the chromosome split (test {' '.join(test_chromosomes)}, {valid_rule}) leaves no "
            f"transcript to train on ({len(splits)} transcripts on "
            f"{', '.join(sorted(set(chromosomes), key=_chromosome_order))})"
        )
    for split, named, option in (("test", test_chromosomes, "--test-chromosomes"),
                                 ("valid", valid_chromosomes, "--valid-chromosomes")):
        if named and split not in present:
            raise IsoformerError(
                f"{option} {' '.join(named)}: no transcript left on them, the {split} split "
                "would be empty"
            )
    return splits


def chromosomes_by_split(chromosomes: Sequence[str], splits: Sequence[str]) -> dict[str, list[str]]:
    """Split -> the chromosomes its rows lie on, in chromosome order."""
    found: dict[str, set[str]] = {}
    for chrom, split in zip(chromosomes, splits, strict=True):
        found.setdefault(split, set()).add(chrom)
    return {split: sorted(found.get(split, ()), key=_chromosome_order)
            for split in ("train", "valid", "test")}
