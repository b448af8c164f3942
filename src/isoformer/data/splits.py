"""Gene-level train/valid/test split: all isoforms of a gene share one split, fixed by a seed.

The genes are sorted, then permuted by numpy's PCG64 generator (never Python's salted `hash`), so
the same gene set and seed give the same split on any machine. Fractions are of genes, rounded:
the first `round(test_fraction * n)` permuted genes are "test", the next `round(val_fraction * n)`
are "valid", the rest "train".
"""

from __future__ import annotations

from collections.abc import Sequence

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
