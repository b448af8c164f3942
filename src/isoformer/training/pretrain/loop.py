"""`pretrain()`: the objective built, the corpus opened, DIR prepared, then the training loop
(AdamW, NT-v2's schedule), evaluated and checkpointed every `eval_every` steps."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from isoformer import __version__
from isoformer.encoders.mlm import MlmObjective, build_objective
from isoformer.files import atomic_output, write_json_atomic
from isoformer.training.pretrain.config import (
    PretrainConfig,
    PretrainSummary,
    dna_length,
    resolve_pretrain_config,
)
from isoformer.training.pretrain.corpus import (
    Corpus,
    SequenceCorpus,
    check_sources,
    data_identity,
    open_corpus,
    seeded_rng,
    seeded_torch_generator,
)
from isoformer.training.pretrain.output import (
    CHECKPOINTS_DIR,
    CURVE_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    SETTINGS_VERSION,
    SUMMARY_FILE,
    export_checkpoint,
    plot_pretraining,
    prepare_out,
    write_metrics,
)
from isoformer.training.pretrain.scoring import Tally, chance_figures, evaluate
from isoformer.typed_config import to_plain

log = logging.getLogger(__name__)


def _lr_factor(warmup: int):
    """Linear warm-up to 1 over `warmup` steps, then 1 / sqrt(step / warmup) (NT-v2's schedule);
    it does not depend on max_steps, so a run extended on resume follows the same schedule."""
    warmup = max(warmup, 1)
    return lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def _progress(enabled: bool):
    import rich.progress

    columns = (
        rich.progress.TextColumn("[progress.description]{task.description}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TimeElapsedColumn(),
        rich.progress.TimeRemainingColumn(),
    )
    return rich.progress.Progress(*columns, disable=not enabled)


def pretrain(
    modality: str,
    preset: str = "tiny",
    out: str | Path = "pretrained",
    fasta: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    max_steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
) -> PretrainSummary:
    """Pretrain the `modality` encoder of `preset` into `out`, or resume it (the package docstring).

    `overrides`: `model.*` fields of the preset (e.g. a deeper encoder) and `pretrain.*` fields
    of `PretrainConfig`; max_steps, batch_size, lr and seed set those `pretrain` fields.
    """
    from isoformer.model.prediction import resolve_device

    out = Path(out)
    fasta = None if fasta is None else Path(fasta)
    data = None if data is None else Path(data)
    check_sources(modality, fasta, data)
    config, encoder_config = resolve_pretrain_config(
        modality, preset, overrides, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed
    )
    if encoder_config.kind == "enformer":  # its window is the encoder's: the run's dna_length
        encoder_config.max_length = (config.pretrain.length or encoder_config.max_length
                                     or dna_length(config, data))
    torch_device = resolve_device(device)

    torch.manual_seed(config.pretrain.seed)  # the initial weights of a random encoder and head
    objective = build_objective(encoder_config)
    corpus = open_corpus(modality, config, encoder_config, objective, fasta, data)
    try:
        settings = {
            "format_version": SETTINGS_VERSION,
            "isoformer_version": __version__,
            "modality": modality,
            "preset": preset,
            "kind": encoder_config.kind,
            "objective": objective.description,
            "config": to_plain(config),
            "data": data_identity(fasta, data, modality),
            "corpus": corpus.describe(),
        }
        resume = prepare_out(out, settings, overwrite)
        return _train(objective, corpus, config.pretrain, out, modality, resume, progress,
                      torch_device)
    finally:
        corpus.close()


def _train(objective: MlmObjective, corpus: Corpus, settings: PretrainConfig, out: Path,
           modality: str, resume: dict[str, Any] | None, progress: bool,
           device: torch.device) -> PretrainSummary:
    masking = settings.masking()
    objective.to(device).train()
    parameters = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, betas=(0.9, 0.98), eps=1e-6,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings.warmup_steps))

    # The held-out set: fixed sequences and fixed masks, the same at every evaluation.
    heldout_sequences = corpus.sample(seeded_rng(settings.seed, 2), settings.eval_sequences,
                                      heldout=True)
    mask_generator = seeded_torch_generator(settings.seed, 3)
    heldout = [
        objective.masked_batch(heldout_sequences[i : i + settings.batch_size], masking,
                               mask_generator)
        for i in range(0, len(heldout_sequences), settings.batch_size)
    ]
    chance = chance_figures(objective, corpus, heldout, settings)

    step, history, seconds = 0, [], 0.0
    resumed_from = None
    if resume is not None:
        objective.load_state_dict(resume["objective"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        step, history, seconds = resume["step"], resume["history"], resume["seconds"]
        resumed_from = step
    else:
        initial = evaluate(objective, heldout, device)
        history.append({"step": 0, "train_loss": None, "train_accuracy": None,
                        "heldout_loss": initial.loss, "heldout_accuracy": initial.accuracy})

    def save() -> None:
        state = {"format": 1, "step": step, "objective": objective.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                 "history": history, "seconds": seconds}
        with atomic_output(out / CHECKPOINTS_DIR / LAST_CHECKPOINT) as tmp:
            torch.save(state, tmp)
        export_checkpoint(objective, out)
        write_metrics(history, out / METRICS_FILE)

    title = f"{modality} ({objective.kind}): {objective.description}"
    tally, started = Tally(), time.perf_counter()
    try:
        with _progress(progress) as bar:
            task = bar.add_task(f"pretrain {modality}", total=settings.max_steps, completed=step)
            while step < settings.max_steps:
                sequences = corpus.sample(seeded_rng(settings.seed, 0, step),
                                          settings.batch_size)
                batch = objective.masked_batch(
                    sequences, masking, seeded_torch_generator(settings.seed, 1, step)
                ).to(device)
                loss = tally.add(*objective.predict(batch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.gradient_clip_val is not None:
                    torch.nn.utils.clip_grad_norm_(parameters, settings.gradient_clip_val)
                optimizer.step()
                schedule.step()
                step += 1
                if step % settings.eval_every == 0 or step == settings.max_steps:
                    scored = evaluate(objective, heldout, device)
                    history.append({"step": step, "train_loss": tally.loss,
                                    "train_accuracy": tally.accuracy,
                                    "heldout_loss": scored.loss,
                                    "heldout_accuracy": scored.accuracy})
                    message = (f"step {step}: train loss {tally.loss:.3f}, held-out loss "
                               f"{scored.loss:.3f}, accuracy {scored.accuracy:.3f} (chance "
                               f"{chance['accuracy']:.3f})")
                    if progress:
                        bar.update(task, description=f"pretrain {modality}: held-out acc "
                                   f"{scored.accuracy:.3f}")
                    else:
                        log.info("%s", message)
                    tally = Tally()
                    seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    save()
                bar.update(task, completed=step)
    except KeyboardInterrupt:
        seconds += time.perf_counter() - started
        log.info("interrupted at step %d: checkpoint written to %s", step, out / CHECKPOINTS_DIR)
        save()
        plot_pretraining(history, chance, out / CURVE_FILE, title)
        raise
    if resume is not None and step == resumed_from:
        save()  # nothing to train (max_steps reached): the files are rewritten as they were
    plot_pretraining(history, chance, out / CURVE_FILE, title)

    first, last = history[0], history[-1]
    summary = PretrainSummary(
        out=out,
        modality=modality,
        kind=objective.kind,
        objective=objective.description,
        steps=step,
        resumed_from=resumed_from,
        heldout_loss=last["heldout_loss"],
        heldout_accuracy=last["heldout_accuracy"],
        initial_heldout_loss=first["heldout_loss"] if first["step"] == 0 else None,
        initial_heldout_accuracy=first["heldout_accuracy"] if first["step"] == 0 else None,
        chance_loss=chance["loss"],
        chance_accuracy=chance["accuracy"],
        uniform_accuracy=1.0 / objective.n_classes,
        heldout_positions=chance["positions"],
        train_sequences=len(corpus.train) if isinstance(corpus, SequenceCorpus) else None,
        heldout_sequences=len(heldout_sequences),
        length=corpus.length,
        unit=objective.unit,
        seconds=round(seconds, 1),
        train_overrides=[f"model.encoders.{modality}.init=pretrained",
                         f"model.encoders.{modality}.checkpoint={out.resolve()}"],
    )
    write_json_atomic(summary.to_json(), out / SUMMARY_FILE)
    log.info("%s", summary.describe())
    return summary
