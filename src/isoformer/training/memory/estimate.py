"""`estimate_memory`: build the config's model with random weights, count its weights, gradients
and optimiser state, run its parts at short inputs (bytes and FLOPs) and extrapolate (see the
package docstring)."""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import math
import random
from typing import Any

import torch

from isoformer.encoders.base import SequenceEncoder
from isoformer.encoders.registry import build_encoder
from isoformer.errors import IsoformerError
from isoformer.model.config import ModelConfig, RunConfig
from isoformer.model.isoformer import FIXED_WINDOW_KINDS, IsoFormer, resolve_model_config
from isoformer.training.memory.curves import Curve
from isoformer.training.memory.flops import DEFAULT_GPU_TFLOPS
from isoformer.training.memory.measure import bytes_scale, cast_for_precision
from isoformer.training.memory.parts import (
    SHORT_TOKENS,
    TOKEN_KINDS,
    WindowEncoder,
    longest_tokens,
    measure_encoder,
    measure_fusion,
)
from isoformer.training.memory.results import (
    DEFAULT_MARGIN,
    ComponentMemory,
    MemoryEstimate,
    check_margin,
)

logger = logging.getLogger(__name__)

def parameter_memory(model: IsoFormer, precision: str, optimizer: str) -> dict[str, int]:
    """Parameters (all, trainable) and the bytes of weights, gradients and optimiser state."""
    scale = bytes_scale(precision)
    parameters = list(model.parameters())  # each shared parameter once
    trainable = [p for p in parameters if p.requires_grad]
    weight_bytes = sum(p.numel() * p.element_size() for p in parameters)
    weight_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    gradient_bytes = sum(p.numel() * p.element_size() for p in trainable)
    # Adam / AdamW: exp_avg and exp_avg_sq like each parameter (their `step` is a CPU scalar).
    states = 2 if optimizer in ("adam", "adamw") else 0
    return {
        "parameters": sum(p.numel() for p in parameters),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "weight_bytes": scale * weight_bytes,
        "gradient_bytes": scale * gradient_bytes,
        "optimizer_bytes": scale * states * gradient_bytes,
    }


def random_init_config(config: ModelConfig) -> tuple[ModelConfig, list[str]]:
    """`config` with every encoder built from its architecture with random weights; notes on
    pre-trained encoders whose architecture had to be taken from the checkpoint's name."""
    from isoformer.encoders.modeling_nucleotide_transformer import NT_V2_CHECKPOINTS

    notes = []
    encoders = dict(config.encoders)
    for modality in config.modalities:
        encoder = config.encoders[modality]
        architecture = dict(encoder.architecture)
        if encoder.init == "pretrained" and not architecture:
            sizes = {checkpoint: size for size, checkpoint in NT_V2_CHECKPOINTS.items()}
            if encoder.kind == "nucleotide_transformer" and encoder.checkpoint in sizes:
                architecture = {"preset": sizes[encoder.checkpoint]}
            notes.append(
                f"{modality}: the config gives no architecture for "
                f"{encoder.checkpoint or 'the default checkpoint'}; estimated with "
                f"{architecture or f'the default {encoder.kind} architecture'}"
            )
        encoders[modality] = dataclasses.replace(encoder, init="random",
                                                 architecture=architecture)
    return dataclasses.replace(copy.deepcopy(config), encoders=encoders), notes


def _world(training: Any, notes: list[str]) -> tuple[int, str]:
    """Devices x nodes training together and the strategy (1 and auto on a config without
    them); devices=auto is taken as one per node, with a note."""
    devices = getattr(training, "devices", 1)
    nodes = getattr(training, "num_nodes", 1)
    strategy = getattr(training, "strategy", "auto")
    if devices == "auto":
        notes.append("training.devices=auto: estimated for one device per node")
        devices = 1
    return int(devices) * int(nodes), strategy


def _accumulation(training: Any, world: int) -> tuple[int, bool]:
    """The micro-batches per optimiser step on `world` devices, and whether the config derives
    them from training.effective_batch_size."""
    derived = getattr(training, "effective_batch_size", None) is not None
    if hasattr(training, "accumulation"):
        return training.accumulation(world), derived
    return training.accumulate_grad_batches, derived


def estimate_memory(config: RunConfig, gpu_memory_bytes: int | None = None,
                    margin: float = DEFAULT_MARGIN, train_samples: int | None = None,
                    gpu_tflops: float = DEFAULT_GPU_TFLOPS) -> MemoryEstimate:
    """Per-device memory and FLOPs of training `config` (see the package docstring), on the CPU.

    `gpu_memory_bytes` (e.g. `parse_size("80GB")`) adds a proposal: the largest micro-batch that
    fits the budget less `margin` and, with a whole gradient accumulation, makes up the config's
    effective batch (batch_size x accumulation x devices); when none fits,
    `proposal_error` says why. `train_samples` (the training split's size) adds the FLOPs of an
    epoch and its GPU-hours at `gpu_tflops` sustained per GPU. The caller's random state is left
    as it was.
    """
    check_margin(margin)
    _check_compute_inputs(train_samples, gpu_tflops)
    training = config.training
    precision = training.precision
    model_config, notes = random_init_config(resolve_model_config(config.model))
    world, strategy = _world(training, notes)
    accumulation, derived = _accumulation(training, world)  # a clear error if it does not divide
    rng = random.Random(0)
    curves: dict[str, tuple[str, int, str, Curve]] = {}  # modality -> kind, length, unit, curve
    fusion_inputs: dict[str, tuple[int, int]] = {}  # modality -> tokens, width
    dtypes: dict[str, torch.dtype] = {}
    windows: dict[str, WindowEncoder] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        logger.info("memory estimate: building %s with random weights",
                    ", ".join(f"{m} ({model_config.encoders[m].kind})"
                              for m in model_config.modalities))
        model = cast_for_precision(IsoFormer(model_config), precision)
        model.train()
        counts = parameter_memory(model, precision, training.optimizer)
        trainable = {m: any(p.requires_grad for p in e.parameters())
                     for m, e in model.encoders.items()}
        for modality, encoder in model.encoders.items():
            kind = encoder.config.kind
            if kind in FIXED_WINDOW_KINDS:
                windows[modality] = WindowEncoder.of(encoder)
                fusion_inputs[modality] = (encoder.output_bins,  # type: ignore[attr-defined]
                                           encoder.output_dim)
                continue
            units = encoder.max_length
            if modality == "dna" and model_config.dna_length is not None:
                units = min(units, model_config.dna_length)
            tokens = longest_tokens(encoder, modality, units, rng)
            fusion_inputs[modality] = (tokens, encoder.output_dim)
            lengths = ([n for n in SHORT_TOKENS if n < tokens] if tokens > max(SHORT_TOKENS)
                       else [tokens])
            logger.info("memory estimate: running %s (%s) at %s tokens", modality, kind,
                        ", ".join(map(str, lengths)))
            units_per_token, specials = TOKEN_KINDS[kind]
            curve, dtypes[modality] = measure_encoder(
                lambda _length, e=encoder: e, modality, lengths,
                lambda length: (length - specials) * units_per_token, precision, rng,
            )
            curves[modality] = (kind, tokens, "tokens", curve)
        # The DNA window encoders are rebuilt at short windows: keep only the fusion and head.
        aggregator, head = model.aggregator, model.head
        del model, encoder
        gc.collect()
        for modality, window_encoder in windows.items():
            lengths = window_encoder.short_windows()
            logger.info("memory estimate: running %s (%s) at %s bp", modality,
                        window_encoder.config.kind, ", ".join(map(str, lengths)))

            def build(window: int, w: WindowEncoder = window_encoder) -> SequenceEncoder:
                return cast_for_precision(build_encoder(w.config_at(window)), precision).train()

            curve, dtypes[modality] = measure_encoder(build, modality, lengths,
                                                      lambda length: length, precision, rng)
            curves[modality] = (window_encoder.config.kind, window_encoder.max_length, "bp",
                                curve)
        logger.info("memory estimate: running the fusion at %s tokens",
                    ", ".join(f"{m} {n}" for m, (n, _) in fusion_inputs.items()))
        fusion = measure_fusion(aggregator, head, fusion_inputs, dtypes, trainable, precision)
    components = [ComponentMemory.from_curve(m, *curves[m]) for m in model_config.modalities]
    components.append(ComponentMemory.from_curve(
        "fusion", model_config.aggregation.kind, sum(n for n, _ in fusion_inputs.values()),
        "tokens", fusion))
    _adjust_for_devices(counts, world, strategy, notes)
    if precision == "16-mixed":
        notes.append("16-mixed is measured with bfloat16 autocast (the same sizes)")
    if precision == "64-true":
        notes.append("64-true is measured in float32 and doubled")
    worst = max(c.fit_residual for c in components)
    if worst > 0.01:
        notes.append(f"an activation or FLOP curve departs from a + bL + cL^2 by {worst:.0%} "
                     "at the lengths run: its extrapolation is less certain")
    estimate = MemoryEstimate(
        precision=precision, optimizer=training.optimizer, components=components,
        batch_size=training.batch_size, accumulate_grad_batches=accumulation, devices=world,
        derived_accumulation=derived, margin=margin, gpu_memory_bytes=gpu_memory_bytes,
        notes=notes, train_samples=train_samples, gpu_tflops=gpu_tflops, **counts,
    )
    if gpu_memory_bytes is not None:
        try:
            estimate.proposal = estimate.propose(gpu_memory_bytes)
        except IsoformerError as error:
            estimate.proposal_error = str(error)
    return estimate


def _adjust_for_devices(counts: dict[str, int], world: int, strategy: str,
                        notes: list[str]) -> None:
    """Several devices: DDP keeps gradient buckets beside the gradients (one more copy); FSDP
    shards weights, gradients and optimiser state (each unit's weights are gathered while it
    runs: not counted); DeepSpeed depends on its ZeRO stage (estimated as DDP)."""
    if world == 1:
        return
    if strategy == "fsdp":
        for name in ("weight_bytes", "gradient_bytes", "optimizer_bytes"):
            counts[name] = math.ceil(counts[name] / world)
        notes.append(f"fsdp: weights, gradients and optimiser state sharded over {world} devices;"
                     " the encoder being run is gathered whole meanwhile (not counted)")
        return
    counts["gradient_bytes"] *= 2
    notes.append(f"{strategy}: gradients counted twice (DDP's gradient buckets)"
                 + ("; deepspeed's ZeRO sharding is not modelled" if strategy == "deepspeed"
                    else ""))


def _check_compute_inputs(train_samples: int | None, gpu_tflops: float) -> None:
    if train_samples is not None and train_samples < 0:
        raise IsoformerError(f"training samples {train_samples} must not be negative")
    if not gpu_tflops > 0:
        raise IsoformerError(f"GPU throughput {gpu_tflops} TFLOP/s must be positive")
