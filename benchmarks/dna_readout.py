"""Which DNA readout learns the promoter motifs of a simulated study from its few hundred genes.

    python benchmarks/dna_readout.py --seeds 0 1 2 [--readouts conv-max conv-max-region ...]
        [--data DATASET --truth truth.json] [--epochs 40]

DNA only, plain PyTorch loops (no Lightning, no fusion) over one-hot TSS windows, so that one
readout trains in under a minute: each is a trunk (one convolution of 64 filters of width 12,
DeepBind-style, or the tiny Enformer) followed by a pooling over window positions and a linear
map to the tissues, trained with AdamW (lr 1e-3, weight decay 0.05), +-3 bp shifts and the
standardised targets, and scored on the test split at its best validation epoch. The readouts:

- `conv-mean`: the mean over the window, as IsoFormer's head pools (the naive path).
- `conv-max`: the max per filter over the window.
- `conv-max-gated`: the max after a learned gate per 32-bp segment of the window.
- `conv-max-upstream`: the max over the window's upstream half only.
- `conv-max-region`: the max over the study's promoter region only (read from `truth.json`: the
  simulation's own knowledge, a bound on what pooling the right positions gives, not a recipe).
- `enformer-max-region`, `enformer-tower-max-region`: the tiny Enformer (whole trunk, or its
  convolution tower alone: `hidden_layer=0`, 3 halvings, the fewest enformer-pytorch builds),
  max over the promoter region.

Without --data it simulates the embedded default (`isoformer demo`'s study, seed 0) into a
temporary directory. Prints one row per readout (test R2 per seed, mean, and the difference
against `conv-mean` measured in the same run) beside the DNA oracle R2 of the test split.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from isoformer.analysis.demo import simulate_demo_dataset
from isoformer.analysis.oracle import oracle_metrics
from isoformer.data.dataset import open_split
from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.registry import build_encoder
from isoformer.encoders.tokenizers import one_hot_encode
from isoformer.metrics import mean_metrics

SHIFT = 3  # bp, as the tiny preset's training.dna_shift
SEGMENTS = 32  # gate segments of conv-max-gated
READOUTS = ("conv-mean", "conv-max", "conv-max-gated", "conv-max-upstream", "conv-max-region",
            "enformer-max-region", "enformer-tower-max-region")


def load_split(dataset: Path, split: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot windows [N, length, 4] and targets [N, T] of one split."""
    data = open_split(dataset, split, dna_length=length)
    windows = [data[i]["dna_sequence"] for i in range(len(data))]
    one_hot, _ = one_hot_encode(windows, unknown="n")
    targets = torch.from_numpy(data.targets.copy())
    data.close()
    return one_hot, targets


class ConvTrunk(nn.Module):
    """One convolution of `filters` x `width` bp with a ReLU: [B, L, 4] -> [B, L - width + 1, F]."""

    def __init__(self, filters: int = 64, width: int = 12):
        super().__init__()
        self.conv = nn.Conv1d(4, filters, width)
        self.dim = filters

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(one_hot.transpose(1, 2))).transpose(1, 2)


class EnformerTrunk(nn.Module):
    """The tiny Enformer through isoformer's wrapper: [B, L, 4] -> [B, bins, D]."""

    def __init__(self, length: int, tower_only: bool):
        super().__init__()
        architecture = {"preset": "tiny"}
        if tower_only:
            architecture.update(num_downsamples=3, target_length=length // 8)
        self.encoder = build_encoder(EncoderConfig(
            kind="enformer", architecture=architecture, max_length=length, crop="center",
            hidden_layer=0 if tower_only else -1))
        self.dim = self.encoder.output_dim

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        return self.encoder({"one_hot": one_hot}).hidden


class Readout(nn.Module):
    """trunk -> pooling over positions [start, end) of its tokens (fractions of the window) ->
    dropout -> linear to the tissues."""

    def __init__(self, trunk: nn.Module, pool: str, span: tuple[float, float], tissues: int):
        super().__init__()
        self.trunk, self.pool, self.span = trunk, pool, span
        self.gate = nn.Parameter(torch.zeros(SEGMENTS)) if pool == "gated" else None
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(trunk.dim, tissues))

    def forward(self, one_hot: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(one_hot)  # [B, L', D]
        length = hidden.shape[1]
        hidden = hidden[:, int(self.span[0] * length):int(self.span[1] * length)]
        if self.pool == "mean":
            pooled = hidden.mean(dim=1)
        else:
            if self.gate is not None:
                segment = torch.arange(hidden.shape[1]) * SEGMENTS // hidden.shape[1]
                hidden = hidden * torch.sigmoid(self.gate[segment])[None, :, None]
            pooled = hidden.amax(dim=1)
        return self.head(pooled)  # [B, T]


def build_readout(name: str, length: int, region: tuple[float, float], tissues: int) -> Readout:
    whole, upstream = (0.0, 1.0), (0.0, 0.5)
    if name.startswith("enformer"):
        trunk: nn.Module = EnformerTrunk(length, tower_only="tower" in name)
    else:
        trunk = ConvTrunk()
    pool = {"conv-mean": "mean", "conv-max-gated": "gated"}.get(name, "max")
    span = region if name.endswith("region") else upstream if name.endswith("upstream") else whole
    return Readout(trunk, pool, span, tissues)


def mean_r2(predicted: torch.Tensor, observed: torch.Tensor) -> float:
    """`isoformer evaluate`'s R2: per tissue, then the mean over tissues. R2 is unchanged by the
    per-tissue standardisation both sides share, so the standardised values score as the raw."""
    tissues = [str(t) for t in range(observed.shape[1])]
    return mean_metrics(predicted.numpy(), observed.numpy(), tissues)["r2"]


def shifted(length: int):
    """A training batch's windows (length + 2 * SHIFT bp) cut to `length` at one random shift."""
    def crop(x: torch.Tensor, generator: np.random.Generator) -> torch.Tensor:
        offset = int(generator.integers(0, 2 * SHIFT + 1))
        return x[:, offset:offset + length]
    return crop


def train_readout(model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  epochs: int, seed: int, augment, lr: float = 1e-3) -> tuple[float, float, int]:
    """(validation R2, test R2) at the best validation epoch, and that epoch. `augment(x,
    generator)` turns a training batch's inputs into the model's (e.g. `shifted`)."""
    generator = np.random.default_rng(seed)
    train_x, train_y = splits["train"]
    gate = getattr(model, "gate", None)
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in model.named_parameters() if n != "gate"]},
         *([{"params": [gate], "lr": 1e-2, "weight_decay": 0.0}] if gate is not None else [])],
        lr=lr, weight_decay=0.05)

    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(x[i:i + 64]) for i in range(0, len(x), 64)])
        model.train()
        return out

    best = (-np.inf, np.nan, -1)
    for epoch in range(epochs):
        order = torch.from_numpy(generator.permutation(len(train_x)))
        for start in range(0, len(order), 32):
            rows = order[start:start + 32]
            loss = ((model(augment(train_x[rows], generator)) - train_y[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        valid = mean_r2(predict(splits["valid"][0]), splits["valid"][1])
        if valid > best[0]:
            best = (valid, mean_r2(predict(splits["test"][0]), splits["test"][1]), epoch)
    return best


def run_readout(name: str, model: nn.Module,
                splits: dict[str, tuple[torch.Tensor, torch.Tensor]], epochs: int, seed: int,
                augment, lr: float = 1e-3) -> float:
    """Train one readout (`train_readout`), print its line, return its test R2."""
    started = time.perf_counter()
    valid_r2, test_r2, epoch = train_readout(model, splits, epochs, seed, augment, lr)
    print(f"{name} seed {seed}: valid R2 {valid_r2:.3f}, test R2 {test_r2:.3f} "
          f"(epoch {epoch}, {time.perf_counter() - started:.0f} s)", flush=True)
    return test_r2


def print_readout_table(results: dict[str, list[float]], seeds: list[int], oracle: float) -> None:
    """One markdown row per readout: test R2 per seed, mean, against conv-mean, share of oracle."""
    print(f"| readout | test R2 per seed ({', '.join(map(str, seeds))}) | mean | "
          "mean - conv-mean | mean / oracle |")
    print("|---|---|---:|---:|---:|")
    naive = np.mean(results["conv-mean"]) if "conv-mean" in results else np.nan
    for name, values in results.items():
        print(f"| {name} | {', '.join(f'{v:.3f}' for v in values)} | {np.mean(values):.3f} | "
              f"{np.mean(values) - naive:+.3f} | {np.mean(values) / oracle:.2f} |")


def promoter_region(truth: Path, length: int) -> tuple[float, float]:
    """The study's promoter region (bp relative to the TSS) as fractions of a centred window."""
    start, end = json.loads(truth.read_text(encoding="utf-8"))["rules"]["promoter_region"]
    return ((length // 2 + start) / length, (length // 2 + end) / length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset from `build` (default: simulate)")
    parser.add_argument("--truth", type=Path, help="its study's truth.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--readouts", nargs="+", choices=READOUTS, default=list(READOUTS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--length", type=int, default=1024, help="DNA window (bp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.data is None:
            study, args.data = simulate_demo_dataset(Path(scratch) / "demo")
            args.truth = study / "truth.json"
        elif args.truth is None:
            parser.error("--data needs --truth (the study's truth.json)")
        region = promoter_region(args.truth, args.length)
        oracle = oracle_metrics(args.truth, args.data, split="test", modalities=["dna"])["r2"]
        train = load_split(args.data, "train", args.length + 2 * SHIFT)
        valid, test = (load_split(args.data, s, args.length) for s in ("valid", "test"))
        mean, std = train[1].mean(dim=0), train[1].std(dim=0)
        splits = {name: (x, (y - mean) / std)
                  for name, (x, y) in {"train": train, "valid": valid, "test": test}.items()}

        results: dict[str, list[float]] = {}
        for name in args.readouts:
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = build_readout(name, args.length, region, train[1].shape[1])
                results.setdefault(name, []).append(run_readout(
                    name, model, splits, args.epochs, seed, shifted(args.length)))

    print(f"\nDNA oracle R2 (test split): {oracle:.3f}; promoter region "
          f"{region[0]:.3f}-{region[1]:.3f} of the window")
    print_readout_table(results, args.seeds, oracle)


if __name__ == "__main__":
    main()
