"""`isoformer pretrain`: masked-language-model pretraining of one encoder, saved so that training
loads it (`model.encoders.<m>.init=pretrained model.encoders.<m>.checkpoint=DIR`).

    summary = pretrain("rna", preset="tiny", out="pre/rna", data="dataset", max_steps=2000)
    isoformer train --data dataset --preset tiny --out run \\
        model.encoders.rna.init=pretrained model.encoders.rna.checkpoint=pre/rna

What each modality pretrains (the encoder of the preset's `model.encoders.<modality>`, after any
`model.*` override; the objectives are `isoformer.encoders.mlm`):
- dna, NT-v2 encoder (`tiny-nt`, `paper-nt`): masked 6-mer tokens of random windows of the genome
  FASTA (`--fasta`, or the one `--data` was built from), `pretrain.length` bp long (default: the
  preset's `model.dna_length`, else the dataset's), either strand, windows holding an N (or any
  non-ACGT code) redrawn, so N runs and gaps are skipped.
- dna, Enformer encoder (`tiny`, `paper`): masked bases of such windows, exactly the encoder's
  window long; a linear head on each trunk bin predicts the bases of its bin. Enformer itself
  was trained supervised on tracks, not by MLM: this objective is ours (docs/pretraining.md).
  Borzoi encoders have no objective (a clear error).
- rna (NT-v2): masked 6-mer tokens of the dataset's transcripts (`rna`), train split; a longer
  transcript gives a random window of `pretrain.length` bases (default: the encoder's max_length).
- protein (ESM-2): masked residues of the dataset's proteins, train split (non-coding transcripts
  have none), random windows of `pretrain.length` residues (default: the encoder's max_length).
Masking: 15% of the maskable positions, of them 80% masked, 10% random, 10% kept (`pretrain.*`).

Held-out metrics: MLM loss and accuracy on the masked positions of a fixed set of held-out
sequences with fixed masks (`pretrain.eval_sequences`), every `pretrain.eval_every` steps: for
DNA, windows from the last `pretrain.val_fraction` of each chromosome (at least one window long;
training windows never reach into it); for RNA and protein, the dataset's valid split (sequences
also in the train split are dropped from it). Chance is a context-free predictor on those same
positions: the label frequencies of 512 training sequences (add-one smoothed), scored as a
cross-entropy (loss) and by always guessing the most frequent label (accuracy).

DIR/
  config.json + model.safetensors   the encoder checkpoint in its loader's layout (NT-v2: the
                        official `esm.*` + `lm_head.*`; ESM-2: `EsmForMaskedLM`); Enformer:
                        config.json + pytorch_model.bin (trunk) and mlm_head.safetensors (ours)
  pretrain.json         what was pretrained: modality, preset, kind, objective, the resolved config
                        (`model` + `pretrain`), the data (FASTA path and size, or the dataset's
                        path and transcripts sha256)
  checkpoints/last.pt   step, weights (head included), optimizer, schedule, history: where a
                        rerun resumes
  metrics.csv           per evaluation: step, train loss / accuracy since the last one, held-out
                        loss / accuracy
  loss_curve.png        the same as curves, chance marked
  summary.json          `PretrainSummary`

Resuming: rerunning on DIR with the same settings continues from checkpoints/last.pt (every step's
windows and masks follow from the seed and the step, so a resumed run equals an uninterrupted one);
only `pretrain.max_steps` may differ. Different settings are refused unless `overwrite`, which
removes the previous pretraining's files. Checkpoints are written every `eval_every` steps, at the
end, and on Ctrl-C.

The modules, by concept: `config` (the settings, the preset's encoder resolved, the summary),
`corpus` (genome windows, a dataset's sequences, the seeded draws), `scoring` (loss / accuracy
tallies, the held-out evaluation, chance), `output` (DIR: settings check, exported checkpoint,
metrics.csv, curves), `loop` (`pretrain` and the training loop).
"""

from isoformer.training.pretrain.config import (
    MODALITY_KINDS,
    PretrainConfig,
    PretrainRunConfig,
    PretrainSummary,
    resolve_pretrain_config,
)
from isoformer.training.pretrain.corpus import GenomeWindows, SequenceCorpus
from isoformer.training.pretrain.loop import pretrain
from isoformer.training.pretrain.output import (
    CHECKPOINTS_DIR,
    CURVE_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    PRETRAIN_FILES,
    SETTINGS_FILE,
    SUMMARY_FILE,
    plot_pretraining,
)

__all__ = [
    "CHECKPOINTS_DIR",
    "CURVE_FILE",
    "LAST_CHECKPOINT",
    "METRICS_FILE",
    "MODALITY_KINDS",
    "PRETRAIN_FILES",
    "SETTINGS_FILE",
    "SUMMARY_FILE",
    "GenomeWindows",
    "PretrainConfig",
    "PretrainRunConfig",
    "PretrainSummary",
    "SequenceCorpus",
    "plot_pretraining",
    "pretrain",
    "resolve_pretrain_config",
]
