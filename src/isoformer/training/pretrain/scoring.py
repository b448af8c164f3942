"""How a pretraining is scored: loss and accuracy on the masked positions, tallied over batches;
the fixed held-out set evaluated; the context-free baseline (chance) on the same positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from isoformer.encoders.mlm import IGNORE_INDEX, MaskedBatch, Masking, MlmObjective
from isoformer.training.pretrain.config import PretrainConfig
from isoformer.training.pretrain.corpus import Corpus, seeded_rng, seeded_torch_generator

CHANCE_SEQUENCES = 512  # training sequences the context-free baseline's frequencies come from


@dataclass
class Tally:
    """Loss and accuracy summed over the masked positions of the batches added."""

    loss_sum: float = 0.0
    correct: int = 0
    positions: int = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss over the selected positions' logits [N, C] and labels [N] (a graph for
        backward), tallied."""
        if not len(labels):
            return logits.sum() * 0.0  # nothing selected in this batch
        loss = F.cross_entropy(logits.float(), labels)
        self.loss_sum += float(loss.detach()) * len(labels)
        self.correct += int((logits.argmax(-1) == labels).sum())
        self.positions += len(labels)
        return loss

    @property
    def loss(self) -> float:
        return self.loss_sum / self.positions if self.positions else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.positions if self.positions else float("nan")


def evaluate(objective: MlmObjective, batches: list[MaskedBatch], device: torch.device
             ) -> Tally:
    """The figures on the fixed held-out batches, without gradients (training mode after)."""
    tally = Tally()
    objective.eval()
    with torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            tally.add(*objective.predict(batch))
    objective.train()
    return tally


def chance_figures(objective: MlmObjective, corpus: Corpus, heldout: list[MaskedBatch],
                   settings: PretrainConfig) -> dict[str, float]:
    """The context-free (unigram) predictor's figures on the held-out positions: label
    frequencies counted over CHANCE_SEQUENCES training sequences (every maskable position,
    add-one smoothing); accuracy of always guessing the most frequent one, and cross-entropy.
    (The entropy of the held-out labels themselves would be biased low for NT-v2's 4,107
    classes over a few thousand positions.)"""
    sequences = corpus.sample(seeded_rng(settings.seed, 4), CHANCE_SEQUENCES)
    everything = Masking(rate=1.0, mask_share=0.0, random_share=0.0)
    generator = seeded_torch_generator(settings.seed, 5)
    counts = torch.zeros(objective.n_classes, dtype=torch.float64)
    for start in range(0, len(sequences), 64):
        labels = objective.masked_batch(sequences[start : start + 64], everything,
                                        generator).labels
        counts += torch.bincount(labels[labels != IGNORE_INDEX],
                                 minlength=objective.n_classes).double()
    log_p = ((counts + 1) / (counts.sum() + objective.n_classes)).log()
    labels = torch.cat([b.labels[b.labels != IGNORE_INDEX] for b in heldout])
    return {"accuracy": float((labels == counts.argmax()).double().mean()),
            "loss": float(-log_p[labels].mean()), "positions": len(labels)}
