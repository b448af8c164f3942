"""`isoformer pretrain`: masking, learning, the checkpoint the loaders read, resuming, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from isoformer.data.genome import reverse_complement
from isoformer.data.schema import TRANSCRIPTS_FILE
from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.mlm import (
    IGNORE_INDEX,
    Masking,
    build_objective,
    mask_bases,
    mask_tokens,
)
from isoformer.encoders.registry import encoder_architecture
from isoformer.encoders.tokenizers import one_hot_encode
from isoformer.errors import IsoformerError
from isoformer.model.config import apply_overrides, load_preset
from isoformer.model.isoformer import IsoFormer
from isoformer.training.pretrain import (
    CHECKPOINTS_DIR,
    CURVE_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    SUMMARY_FILE,
    GenomeWindows,
    pretrain,
    resolve_pretrain_config,
)
from tests.tiny_dataset import write_tiny_dataset

# Short runs: every test pretrains for a handful of steps on tiny encoders.
QUICK = ["pretrain.eval_every=2", "pretrain.eval_sequences=8", "pretrain.warmup_steps=1"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fasta(path: Path, chromosomes: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in chromosomes.items()))
    return path


def _random_dna(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    chrom = _random_dna(3000, 1) + "N" * 400 + _random_dna(3000, 2)
    return _fasta(tmp_path_factory.mktemp("genome") / "genome.fa", {"chr1": chrom,
                                                                   "chr2": _random_dna(1500, 3)})


# ------------------------------------------------------------------------------------- masking
def test_masking_rates_and_the_80_10_10_split_on_a_fixed_seed():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(6, 4102, (200, 500), generator=generator)
    maskable = torch.rand(200, 500, generator=generator) > 0.1  # ~10% special positions
    random_ids = torch.arange(6, 4102)
    masked, labels = mask_tokens(input_ids, maskable, 2, random_ids, Masking(), generator)

    n = int(maskable.sum())  # ~90,000; binomial sd of the selected share ~0.12%
    selected = labels != IGNORE_INDEX
    assert abs(selected.sum() / n - 0.15) < 0.005
    assert not (selected & ~maskable).any()  # never outside the maskable positions
    assert torch.equal(labels[selected], input_ids[selected])
    assert torch.equal(masked[~selected], input_ids[~selected])
    n_selected = int(selected.sum())
    to_mask = selected & (masked == 2)
    changed = selected & (masked != input_ids) & (masked != 2)
    kept = selected & (masked == input_ids)
    assert abs(to_mask.sum() / n_selected - 0.8) < 0.015
    assert abs(changed.sum() / n_selected - 0.1) < 0.01  # random ids equal to the original: ~0
    assert abs(kept.sum() / n_selected - 0.1) < 0.01
    assert int(to_mask.sum() + changed.sum() + kept.sum()) == n_selected
    assert ((masked[changed] >= 6) & (masked[changed] < 4102)).all()

    # Same seed, same masks.
    again = mask_tokens(input_ids, maskable, 2, random_ids, Masking(),
                        torch.Generator().manual_seed(0))
    first = mask_tokens(input_ids, maskable, 2, random_ids, Masking(),
                        torch.Generator().manual_seed(0))
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    with pytest.raises(IsoformerError, match="mask_share"):
        Masking(mask_share=0.95, random_share=0.1)


def test_masked_bases_read_as_n_and_n_is_never_selected():
    generator = torch.Generator().manual_seed(1)
    window = _random_dna(4000) + "N" * 1000
    one_hot, valid = one_hot_encode([window] * 20)
    masked, labels = mask_bases(one_hot, valid, Masking(), generator)
    selected = labels != IGNORE_INDEX
    assert not selected[:, 4000:].any()  # N bases
    assert abs(selected.sum() / (20 * 4000) - 0.15) < 0.006
    assert torch.equal(labels[selected], one_hot.argmax(-1)[selected])
    zeroed = selected & (masked.sum(-1) == 0)
    assert abs(zeroed.sum() / selected.sum() - 0.8) < 0.02
    assert torch.equal(masked[~selected], one_hot[~selected])
    assert (masked[selected].sum(-1) <= 1).all()  # a mask or one base, never a mixture


@pytest.mark.parametrize("kind", ["nucleotide_transformer", "esm2"])
def test_special_and_pad_tokens_are_never_masked(kind):
    config = EncoderConfig(kind=kind, architecture=encoder_architecture(kind, "tiny"))
    objective = build_objective(config)
    sequences = (["ACGTACGTACGTNACGTAC", "ACGTAC" * 10] if kind == "nucleotide_transformer"
                 else ["MKV", "MKVLAAGLLW" * 5])
    batch = objective.masked_batch(sequences, Masking(rate=1.0), torch.Generator().manual_seed(0))
    ids, attention, labels = batch.inputs["input_ids"], batch.inputs["attention_mask"], batch.labels
    tokenizer = objective.tokenizer
    original = [tokenizer.encode(s) for s in sequences]
    special = {tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.mask_token_id}
    special |= ({tokenizer.n_token_id} if kind == "nucleotide_transformer"
                else {tokenizer.eos_token_id})
    for row, tokens in enumerate(original):
        for position, token in enumerate(tokens):
            if token in special:
                assert labels[row, position] == IGNORE_INDEX
                assert ids[row, position] == token
            else:  # rate 1: every other token is selected
                assert labels[row, position] == token
        assert (labels[row, len(tokens):] == IGNORE_INDEX).all()  # padding
        assert (ids[row, len(tokens):] == tokenizer.pad_token_id).all()
        assert not attention[row, len(tokens):].any()


# -------------------------------------------------------------------------------------- corpora
def test_genome_windows_skip_n_runs_and_hold_out_chromosome_tails(genome):
    windows = GenomeWindows(genome, 200, val_fraction=0.1)
    assert windows.heldout == [("chr1", 6400 - 640, 6400), ("chr2", 1500 - 200, 1500)]
    assert windows.train == [("chr1", 0, 6400 - 640), ("chr2", 0, 1300)]
    drawn = windows.sample(np.random.default_rng(0), 300)
    assert all(len(w) == 200 and "N" not in w for w in drawn)
    lines = genome.read_text().split("\n")
    training = [lines[1][: 6400 - 640], lines[3][:1300]]  # the held-out tails cut off

    def within(window: str) -> bool:
        return any(window in part for part in training)

    forward = sum(map(within, drawn))
    assert 100 < forward < 200  # both strands
    assert all(within(w) or within(reverse_complement(w)) for w in drawn)  # never a tail
    windows.close()


# ------------------------------------------------------------------------------------- learning
def _repetitive_dataset(out: Path) -> Path:
    """The tiny dataset with proteins each made of one repeated two-residue unit (six units, no
    residue in two), a third of them held out."""
    data = write_tiny_dataset(out)
    table = pl.read_parquet(data / TRANSCRIPTS_FILE)
    rng = random.Random(0)
    units = ["LA", "GK", "ED", "WS", "PT", "RV"]
    proteins = [(units[i // 3 % 6] * 50)[rng.randrange(2):][: rng.randrange(60, 100)]
                for i in range(len(table))]
    splits = ["valid" if i % 3 == 2 else "train" for i in range(len(table))]
    table = table.with_columns(pl.Series("protein", proteins), pl.Series("split", splits))
    table.write_parquet(data / TRANSCRIPTS_FILE)
    return data


def test_loss_falls_on_a_repetitive_corpus_within_a_few_dozen_steps(tmp_path):
    data = _repetitive_dataset(tmp_path / "data")
    summary = pretrain("protein", "tiny", tmp_path / "pre", data=data, max_steps=40, lr=1e-2,
                       overrides=["pretrain.eval_every=20", "pretrain.eval_sequences=16",
                                  "pretrain.warmup_steps=5"], progress=False)
    assert summary.heldout_sequences == 8 and summary.heldout_positions > 60
    # A masked residue is one of its protein's two: far below the context-free entropy (~ln 12)
    # once the model reads the other residues, never below it without them.
    assert summary.initial_heldout_loss > 3.0  # ~ln(33) at random initial weights
    assert summary.heldout_loss < 0.5 * summary.initial_heldout_loss
    assert summary.heldout_loss < summary.chance_loss - 0.8
    assert summary.heldout_accuracy > summary.chance_accuracy + 0.15


def test_enformer_masked_bases_learn_a_repetitive_genome(tmp_path):
    unit = "ACGGTCATTGCA"  # period 12: each base follows from its neighbours
    fasta = _fasta(tmp_path / "genome.fa", {"chr1": unit * 500})
    summary = pretrain("dna", "tiny", tmp_path / "pre", fasta=fasta, max_steps=40, lr=1e-2,
                       overrides=["pretrain.length=256", "pretrain.eval_every=20",
                                  "pretrain.eval_sequences=8", "pretrain.warmup_steps=5"],
                       progress=False)
    assert summary.kind == "enformer" and summary.length == 256
    assert summary.initial_heldout_accuracy < 0.4
    assert summary.heldout_accuracy > 0.6  # chance: ~0.3, the most frequent base
    assert summary.heldout_loss < summary.chance_loss - 0.5


# ----------------------------------------------------------------------------------- checkpoints
def _objective_state(out: Path, modality: str, preset: str, overrides=()) -> dict:
    """The pretrained weights as the objective's encoder holds them (from the resume point)."""
    _, encoder = resolve_pretrain_config(modality, preset, [*QUICK, *overrides])
    if encoder.kind == "enformer":
        encoder.max_length = json.loads((out / "pretrain.json").read_text())["corpus"]["length"]
    objective = build_objective(encoder)
    state = torch.load(out / CHECKPOINTS_DIR / LAST_CHECKPOINT, weights_only=False)
    objective.load_state_dict(state["objective"])
    return objective.encoder_state_dict()


def _encoder_state(encoder) -> dict:
    module = encoder.model if encoder.config.kind == "enformer" else encoder.backbone
    return module.state_dict()


@pytest.mark.parametrize("modality, preset", [("dna", "tiny"), ("rna", "tiny"),
                                              ("protein", "tiny"), ("dna", "tiny-nt")])
def test_the_checkpoint_loads_into_the_training_model(tmp_path, dataset, genome, modality,
                                                      preset):
    source = {"fasta": genome} if modality == "dna" else {"data": dataset}
    overrides = ["pretrain.length=256"] if modality == "dna" else []
    out = tmp_path / "pre"
    summary = pretrain(modality, preset, out, max_steps=3, lr=1e-2, progress=False,
                       overrides=[*QUICK, *overrides], **source)
    assert summary.steps == 3
    for name in (SUMMARY_FILE, METRICS_FILE, CURVE_FILE, "config.json"):
        assert (out / name).is_file(), name
    assert summary.train_overrides == [f"model.encoders.{modality}.init=pretrained",
                                       f"model.encoders.{modality}.checkpoint={out.resolve()}"]

    # What `isoformer train --preset PRESET <train_overrides>` builds.
    window = ["model.dna_length=256"] if modality == "dna" else []
    config = apply_overrides(load_preset(preset),
                             [f"model.modalities={modality}", *window, *summary.train_overrides])
    model = IsoFormer.from_config(config.model)
    loaded = _encoder_state(model.encoders[modality])
    pretrained = _objective_state(out, modality, preset, overrides)
    assert set(loaded) == set(pretrained)
    for key, value in pretrained.items():
        assert torch.equal(loaded[key], value), key
    # ... and they are not the random initial weights.
    torch.manual_seed(0)
    random_model = IsoFormer.from_config(
        apply_overrides(load_preset(preset), [f"model.modalities={modality}", *window]).model)
    fresh = _encoder_state(random_model.encoders[modality])
    floats = [key for key, value in loaded.items() if value.is_floating_point()]
    assert any(not torch.equal(fresh[key], loaded[key]) for key in floats)


# -------------------------------------------------------------------------------------- resuming
def test_a_rerun_resumes_the_step_count_and_equals_an_uninterrupted_run(tmp_path, dataset):
    kwargs = dict(data=dataset, overrides=QUICK, progress=False, lr=3e-3)
    first = pretrain("rna", "tiny", tmp_path / "a", max_steps=4, **kwargs)
    assert first.steps == 4 and first.resumed_from is None
    resumed = pretrain("rna", "tiny", tmp_path / "a", max_steps=6, **kwargs)
    assert resumed.resumed_from == 4 and resumed.steps == 6
    history = torch.load(tmp_path / "a" / CHECKPOINTS_DIR / LAST_CHECKPOINT,
                         weights_only=False)["history"]
    assert [row["step"] for row in history] == [0, 2, 4, 6]
    assert (tmp_path / "a" / METRICS_FILE).read_text().count("\n") == 5  # header + 4 rows

    straight = pretrain("rna", "tiny", tmp_path / "b", max_steps=6, **kwargs)
    assert straight.heldout_loss == pytest.approx(resumed.heldout_loss, abs=1e-6)
    a = torch.load(tmp_path / "a" / CHECKPOINTS_DIR / LAST_CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "b" / CHECKPOINTS_DIR / LAST_CHECKPOINT, weights_only=False)
    for key, value in a["objective"].items():
        assert torch.allclose(value, b["objective"][key], atol=1e-6), key

    # Finished: a rerun with the same max_steps trains nothing.
    again = pretrain("rna", "tiny", tmp_path / "a", max_steps=6, **kwargs)
    assert again.resumed_from == 6 and again.steps == 6
    # Other settings are refused, unless overwrite starts afresh.
    with pytest.raises(IsoformerError, match="other settings.*config.pretrain.lr"):
        pretrain("rna", "tiny", tmp_path / "a", max_steps=6, **{**kwargs, "lr": 1e-4})
    fresh = pretrain("rna", "tiny", tmp_path / "a", max_steps=2, overwrite=True,
                     **{**kwargs, "lr": 1e-4})
    assert fresh.resumed_from is None and fresh.steps == 2


# ---------------------------------------------------------------------------------------- errors
def test_clear_errors_for_bad_modality_preset_or_missing_data(tmp_path, dataset, genome):
    cases = [
        (dict(modality="cds", data=dataset), "unknown modality 'cds'"),
        (dict(modality="rna", preset="huge", data=dataset), "unknown preset 'huge'"),
        (dict(modality="dna"), "pass --fasta FASTA or --data DATASET"),
        (dict(modality="rna"), "pass --data DATASET"),
        (dict(modality="protein", fasta=genome), "--fasta is for --modality dna"),
        (dict(modality="dna", fasta=tmp_path / "absent.fa"), "not found"),
        (dict(modality="dna", preset="tiny-borzoi", fasta=genome),
         "borzoi dna encoder, which has no masked pretraining objective"),
        (dict(modality="rna", data=dataset, overrides=["pretrain.mask_rate=0"]), "masking"),
        (dict(modality="dna", fasta=genome, overrides=["pretrain.length=4096"]),
         "no sequence is at least 8192 bp"),
    ]
    for kwargs, message in cases:
        with pytest.raises(IsoformerError, match=message.replace("(", r"\(")):
            pretrain(**{"preset": "tiny", "out": tmp_path / "x", "progress": False, **kwargs})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(IsoformerError, match="not a pretraining directory"):
        pretrain("rna", "tiny", tmp_path / "other", data=dataset, max_steps=1, progress=False)
