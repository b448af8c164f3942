"""Which RNA readout learns a simulated study's RNA rules (AU-rich elements, 3'UTR motifs, length).

    python benchmarks/rna_readout.py --data DATASET --truth truth.json [--seeds 0 1 2]
        [--readouts length conv-mean conv-max conv-sum] [--epochs 40] [--lr 1e-3]

The RNA counterpart of `dna_readout.py`, with its training loop (AdamW, lr 1e-3 unless --lr,
weight decay 0.05, the standardised targets, test R2 at the best validation epoch): RNA only,
over the one-hot spliced RNA (A, C, G, U) of each transcript. The simulation's RNA term is a sum
over the RNA (each copy of an element adds its effect) plus an effect per doubling of the RNA's
length, so a readout that pools by the mean, as IsoFormer's head does, sees densities, not
counts. The readouts:

- `length`: a linear map of log2(RNA length) alone (the length effect, nothing else).
- `conv-mean`: one convolution of 64 filters of width 10 with a ReLU, mean over the RNA (the
  head's `masked_mean`, the naive path).
- `conv-max`: the same, the max per filter over the RNA (the head's `masked_max`).
- `conv-sum`: the same, the sum per filter over the RNA (per kb): counts of what each filter
  finds, length included.

Beside them, the k-mer ridge of `isoformer baseline --kind kmer --modalities rna` (6-mer counts
and log2 length) fitted on the same split. Prints one row per readout (test R2 per seed, the
mean, the difference against `conv-mean` measured in the same run, the share of the RNA oracle).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from dna_readout import ConvTrunk, mean_r2, print_readout_table, run_readout
from torch import nn

from isoformer.analysis.oracle import oracle_metrics
from isoformer.constants import RNA_SEQUENCE, TRANSCRIPT_ID
from isoformer.data.dataset import open_split
from isoformer.encoders.tokenizers import one_hot_encode
from isoformer.model.head import masked_max, masked_mean
from isoformer.model.kmer_baseline import KmerBaseline, KmerBaselineConfig

WIDTH = 10  # bp: the study's RNA elements are 5-10 bp
READOUTS = ("length", "conv-mean", "conv-max", "conv-sum")


def load_split(dataset: Path, split: str) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Records (for the k-mer ridge), inputs [N, L, 5] (one-hot A, C, G, U and the mask of real
    bases, padded to the split's longest RNA) and targets [N, T] of one split. Read from the
    table alone: no DNA window is fetched."""
    data = open_split(dataset, split, dna_length=1024)
    records = [{TRANSCRIPT_ID: t, RNA_SEQUENCE: rna} for t, rna in zip(data.transcript_ids,
                                                                         data.rna)]
    one_hot, mask = one_hot_encode(data.rna, unknown="n")
    targets = torch.from_numpy(data.targets.copy())
    data.close()
    return records, torch.cat([one_hot, mask[..., None].float()], dim=-1), targets


class RnaReadout(nn.Module):
    """[B, L, 5] -> pooled features -> dropout -> linear to the tissues [B, T]."""

    def __init__(self, pool: str, tissues: int):
        super().__init__()
        self.pool = pool
        self.trunk = None if pool == "length" else ConvTrunk(width=WIDTH)
        width = 1 if self.trunk is None else self.trunk.dim
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, tissues))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        one_hot, mask = inputs[..., :4], inputs[..., 4] > 0  # [B, L, 4], [B, L]
        if self.trunk is None:
            # Centred on a 1-kb RNA so the bias starts near the target mean.
            return self.head(torch.log2(mask.sum(dim=1, keepdim=True).float()) - 10.0)
        hidden = self.trunk(one_hot)  # [B, L - WIDTH + 1, F]
        valid = mask[:, WIDTH - 1:]  # a window is real where its last base is
        if self.pool == "mean":
            pooled = masked_mean(hidden, valid)
        elif self.pool == "max":
            pooled = masked_max(hidden, valid)
        else:
            pooled = (hidden * valid[..., None]).sum(dim=1) / 1000.0
        return self.head(pooled)


def fit_kmer_ridge(splits: dict[str, tuple[list[dict], torch.Tensor, torch.Tensor]]) -> float:
    """Test R2 of `isoformer baseline --kind kmer --modalities rna` on the same split."""
    (train, _, y_train), (valid, _, y_valid) = splits["train"], splits["valid"]
    ridge = KmerBaseline.fit(KmerBaselineConfig(modalities=["rna"]), train, y_train.numpy(),
                             valid, y_valid.numpy())
    test, _, y_test = splits["test"]
    return mean_r2(torch.from_numpy(ridge.predict(test)), y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset from `build`")
    parser.add_argument("--truth", type=Path, required=True, help="its study's truth.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--readouts", nargs="+", choices=READOUTS, default=list(READOUTS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    oracle = oracle_metrics(args.truth, args.data, split="test", modalities=["rna"])["r2"]
    splits = {s: load_split(args.data, s) for s in ("train", "valid", "test")}
    kmer = fit_kmer_ridge(splits)
    mean, std = splits["train"][2].mean(dim=0), splits["train"][2].std(dim=0)
    scaled = {name: (x, (y - mean) / std) for name, (_, x, y) in splits.items()}

    results: dict[str, list[float]] = {}
    for name in args.readouts:
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = RnaReadout(name.removeprefix("conv-"), scaled["train"][1].shape[1])
            results.setdefault(name, []).append(run_readout(
                name, model, scaled, args.epochs, seed, lambda x, generator: x, args.lr))

    print(f"\nRNA oracle R2 (test split): {oracle:.3f}; k-mer ridge (RNA only): {kmer:.3f} "
          f"({kmer / oracle:.2f} of the oracle)")
    print_readout_table(results, args.seeds, oracle)


if __name__ == "__main__":
    main()
