"""How much GPU memory a training run needs, estimated on the CPU before it starts.

    estimate = estimate_memory(load_preset("paper"), gpu_memory_bytes=parse_size("80GB"))
    print(estimate.format())          # a few lines: weights, gradients, optimiser, activations
    estimate.proposal                 # micro-batch x accumulation reaching the effective batch
    estimate.total_bytes(8)           # per device at micro-batch 8

Nothing is downloaded and no GPU is needed: every encoder is built from its architecture with
random weights (memory does not depend on the values). Per device:

- Weights, gradients and optimiser state are counted from the built model: gradients for the
  trainable parameters only (a frozen encoder has none), Adam / AdamW two moments per trainable
  parameter, all in the parameters' dtype (float32 under 32-true and bf16-mixed, whose float32
  weights are the master weights; bfloat16 under bf16-true, the head excepted).
- Activations are measured on the CPU under the run's precision: the bytes of every tensor
  autograd saves for the backward pass (`torch.autograd.graph.saved_tensors_hooks`, each storage
  once, parameters left out) plus the encoders' outputs, and the peak of the transient tensors
  above them during the forward and backward passes (every tensor an operator creates, tracked
  until freed). Each encoder runs at a few short inputs (DNA windows of a few dozen bins, a few
  hundred tokens) at batch 1 and 2; a + b L + c L^2 is fitted to each quantity and evaluated at
  the config's length. The batch-2 minus batch-1 difference is the per-sample part; the rest
  (autocast's low-precision weight copies, position tables) does not grow with the micro-batch.
  The fusion and head run directly at the config's token counts (they are cheap).
- Not counted: the CUDA context, allocator fragmentation, cuBLAS / cuDNN workspaces (kernels'
  internal buffers); `margin` of the budget is kept free for them.

See docs/memory.md for the method and its checks.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
import math
import random
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from isoformer.encoders.base import EncoderConfig, EncoderOutput, SequenceEncoder
from isoformer.encoders.registry import build_encoder
from isoformer.errors import IsoformerError
from isoformer.model.config import ModelConfig, RunConfig
from isoformer.model.isoformer import FIXED_WINDOW_KINDS, IsoFormer, resolve_model_config

logger = logging.getLogger(__name__)

# Share of the budget kept free for what the estimate leaves out (see docs/memory.md).
DEFAULT_MARGIN = 0.15
MIXED_PRECISIONS = ("bf16-mixed", "16-mixed")
# Token encoders: sequence units per token and special tokens (NT-v2: <cls>; ESM-2: <cls>, <eos>).
_TOKEN_KINDS = {"nucleotide_transformer": (6, 1), "esm2": (1, 2)}
_LETTERS = {"dna": "ACGT", "rna": "ACGT", "protein": "ACDEFGHIKLMNPQRSTVWY"}
# Short inputs the token encoders run at (tokens); longer configs are extrapolated.
SHORT_TOKENS = (32, 64, 96, 128)
# DNA window encoders run at 1..4 times a short window of at least this many bins (and output
# bins): enough for BatchNorm at batch 1 and for the central crop.
MIN_SHORT_BINS = 8
# The architecture field holding a DNA window encoder's output bins (its central crop).
_WINDOW_CROP_FIELD = {"enformer": "target_length", "borzoi": "bins_to_return"}

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


# ----------------------------------------------------------------------------------------- sizes

def parse_size(text: str) -> int:
    """"80GB" -> 80 x 10^9 bytes; "80GiB" and "80G" -> 80 x 2^30; "512MiB", "1.5TB", "1000".

    KB / MB / GB / TB are decimal, KiB / MiB / GiB / TiB and the one-letter K / M / G / T binary
    (as `free -g`, Slurm and Docker read them); a bare number is bytes; case does not matter.
    """
    match = _SIZE_PATTERN.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise IsoformerError(
            f"memory size {text!r}: write a number and a unit, e.g. 80GB (10^9 bytes), 80GiB or "
            "80G (2^30 bytes), 512MiB"
        )
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if size < 1:
        raise IsoformerError(f"memory size {text!r} must be at least one byte")
    return int(size)


def format_bytes(size: float) -> str:
    """Bytes in binary units: "12.3 GiB", "512 MiB", "0 B"."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


# -------------------------------------------------------------------------------------- results

@dataclass
class ComponentMemory:
    """Activation memory of one part of the model at the config's input length."""

    name: str  # "dna", "rna", "protein" (an encoder) or "fusion" (aggregation, head and loss)
    kind: str  # the encoder kind, or the aggregation kind
    length: int  # the config's input length in `unit`
    unit: str  # "bp" or "tokens"
    per_sample_bytes: float  # kept for the backward pass, per sample of the micro-batch
    fixed_bytes: float  # kept per step whatever the micro-batch (autocast weight copies, tables)
    # The peak of the transient tensors above what is kept, while this part runs forward or
    # backward (per sample, and per step).
    transient_per_sample_bytes: float
    transient_fixed_bytes: float
    measured_lengths: tuple[int, ...]  # the inputs run (the config's own when not fitted)
    # Largest deviation of a measured point from its fitted curve, relative (0 when not fitted).
    fit_residual: float = 0.0

    @property
    def extrapolated(self) -> bool:
        return self.measured_lengths != (self.length,)

    def kept_bytes(self, micro_batch: int) -> float:
        return self.fixed_bytes + micro_batch * self.per_sample_bytes

    def transient_bytes(self, micro_batch: int) -> float:
        return self.transient_fixed_bytes + micro_batch * self.transient_per_sample_bytes


@dataclass
class BatchProposal:
    """A micro-batch and gradient accumulation that reach the effective batch within a budget."""

    micro_batch: int  # per device
    accumulate_grad_batches: int
    devices: int  # processes the effective batch is shared by
    total_bytes: float  # per device at `micro_batch`
    usable_bytes: float  # the budget less the margin
    # The config sets training.effective_batch_size, from which the accumulation is derived.
    derived_accumulation: bool = False

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.accumulate_grad_batches * self.devices

    def overrides(self) -> list[str]:
        """Config overrides that apply the proposal."""
        if self.derived_accumulation:
            return [f"training.batch_size={self.micro_batch}"]
        return [f"training.batch_size={self.micro_batch}",
                f"training.accumulate_grad_batches={self.accumulate_grad_batches}"]


@dataclass
class MemoryEstimate:
    """Per-device memory of one training step of a config (see the module docstring)."""

    precision: str
    optimizer: str
    parameters: int
    trainable_parameters: int
    weight_bytes: int  # parameters and buffers in their training dtype (a shard under fsdp)
    gradient_bytes: int  # DDP's gradient buckets included when several devices train
    optimizer_bytes: int
    components: list[ComponentMemory]
    batch_size: int  # the config's micro-batch, per device
    accumulate_grad_batches: int  # the config's, or derived from its effective_batch_size
    devices: int = 1  # devices x nodes training together
    derived_accumulation: bool = False  # the config sets training.effective_batch_size
    margin: float = DEFAULT_MARGIN
    gpu_memory_bytes: int | None = None
    proposal: BatchProposal | None = None
    proposal_error: str | None = None  # why no micro-batch fits `gpu_memory_bytes`
    notes: list[str] = field(default_factory=list)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.accumulate_grad_batches * self.devices

    @property
    def activation_bytes_per_sample(self) -> float:
        """Kept for the backward pass, per sample (every part)."""
        return sum(c.per_sample_bytes for c in self.components)

    @property
    def activation_fixed_bytes(self) -> float:
        return sum(c.fixed_bytes for c in self.components)

    def activation_bytes(self, micro_batch: int) -> float:
        """Kept for the backward pass at `micro_batch` (the parts add up)."""
        return sum(c.kept_bytes(micro_batch) for c in self.components)

    def peak_activation_bytes(self, micro_batch: int) -> float:
        """The most activation memory held at once at `micro_batch`.

        The parts run forward in order (the encoders, then the fusion) and backward in reverse,
        so while part i runs either way, the parts before it hold what they keep and the parts
        after it hold nothing: the peak is the largest, over i, of what parts 1..i keep plus
        part i's transient peak.
        """
        peak, kept = 0.0, 0.0
        for component in self.components:
            kept += component.kept_bytes(micro_batch)
            peak = max(peak, kept + component.transient_bytes(micro_batch))
        return peak

    def transient_bytes(self, micro_batch: int) -> float:
        """The peak above what is kept (`peak_activation_bytes` - `activation_bytes`)."""
        return self.peak_activation_bytes(micro_batch) - self.activation_bytes(micro_batch)

    @property
    def state_bytes(self) -> float:
        """Weights, gradients and optimiser state."""
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes

    def total_bytes(self, micro_batch: int) -> float:
        """Per device at `micro_batch`: weights + gradients + optimiser state + peak activations."""
        return self.state_bytes + self.peak_activation_bytes(micro_batch)

    def propose(self, gpu_memory_bytes: int, margin: float | None = None) -> BatchProposal:
        """The largest micro-batch whose total fits the budget less the margin and which, with a
        whole gradient accumulation, makes up the effective batch; an error when none fits."""
        margin = self.margin if margin is None else margin
        _check_margin(margin)
        usable = gpu_memory_bytes * (1.0 - margin)
        per_device = self.effective_batch // self.devices
        for micro_batch in sorted(_divisors(per_device), reverse=True):
            if self.total_bytes(micro_batch) <= usable:
                return BatchProposal(micro_batch, per_device // micro_batch, self.devices,
                                     self.total_bytes(micro_batch), usable,
                                     self.derived_accumulation)
        budget = (f"the {format_bytes(usable)} usable of {format_bytes(gpu_memory_bytes)} "
                  f"({margin:.0%} kept free)")
        if self.state_bytes > usable:
            need = (f"the weights, gradients and optimiser state alone need "
                    f"{format_bytes(self.state_bytes)} per device, more than {budget}")
        else:
            need = (f"even micro-batch 1 needs {format_bytes(self.total_bytes(1))} per device, "
                    f"more than {budget}")
        raise IsoformerError(f"memory: {need}; {self._remedies()}")

    def _remedies(self) -> str:
        remedies = []
        if self.precision in ("32-true", "64-true"):
            remedies.append("training.precision=bf16-mixed")
        remedies.append("a frozen encoder (model.encoders.<modality>.train_mode=frozen)")
        encoders = [c for c in self.components if c.name != "fusion"]
        if encoders:
            largest = max(encoders, key=lambda c: c.per_sample_bytes)
            where = ("model.dna_length" if largest.name == "dna"
                     else f"model.encoders.{largest.name}.max_length")
            remedies.append(f"shorter {largest.name} inputs ({where}: "
                            f"{format_bytes(largest.per_sample_bytes)} a sample now)")
            if "gradient_checkpointing" in {f.name for f in dataclasses.fields(EncoderConfig)}:
                remedies.append(f"model.encoders.{largest.name}.gradient_checkpointing=true")
        remedies.append("a larger GPU")
        return "try " + ", ".join(remedies)

    def format(self) -> str:
        """A few lines for the start of a run."""
        size = format_bytes
        devices = f", {self.devices} devices" if self.devices > 1 else ""
        lines = [
            f"memory estimate per device ({self.precision}, {self.optimizer}{devices}):",
            f"  parameters {self.parameters / 1e6:,.1f}M ({self.trainable_parameters / 1e6:,.1f}M "
            f"trainable): weights {size(self.weight_bytes)}, gradients "
            f"{size(self.gradient_bytes)}, optimiser state {size(self.optimizer_bytes)}",
        ]
        parts = ", ".join(f"{c.name} {size(c.per_sample_bytes)}" + (
            f" at {c.length:,} {c.unit}" if c.name != "fusion" else "") for c in self.components)
        lines.append(f"  activations kept for backward: {size(self.activation_bytes_per_sample)} "
                     f"per sample ({parts}) + {size(self.activation_fixed_bytes)} per step")
        lines.append(f"  activation peak with transient tensors: "
                     f"{size(self.peak_activation_bytes(1))} at micro-batch 1, "
                     f"{size(self.peak_activation_bytes(self.batch_size))} at {self.batch_size}")
        lines.append(
            f"  total at micro-batch {self.batch_size}: {size(self.total_bytes(self.batch_size))}"
            f" (the config's {self.batch_size} x {self.accumulate_grad_batches} accumulation"
            f"{f' x {self.devices} devices' if self.devices > 1 else ''} = "
            f"{self.effective_batch}); at micro-batch 1: {size(self.total_bytes(1))}"
        )
        if self.gpu_memory_bytes is not None:
            usable = self.gpu_memory_bytes * (1 - self.margin)
            budget = (f"{self.gpu_memory_bytes / 1e9:,.1f} GB = {size(self.gpu_memory_bytes)} "
                      f"({size(usable)} usable, {self.margin:.0%} margin)")
            if self.proposal is not None:
                p = self.proposal
                lines.append(
                    f"  proposal for {budget}: micro-batch {p.micro_batch} x "
                    f"{p.accumulate_grad_batches} accumulation"
                    f"{f' x {p.devices} devices' if p.devices > 1 else ''} = "
                    f"{p.effective_batch}, {size(p.total_bytes)} ({' '.join(p.overrides())})"
                )
            else:
                lines.append(f"  does not fit {budget}: {self.proposal_error}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON), with the totals at the config's micro-batch and at 1."""
        data = dataclasses.asdict(self)
        data.update(
            effective_batch=self.effective_batch,
            total_bytes_at_batch_size=self.total_bytes(self.batch_size),
            total_bytes_at_micro_batch_1=self.total_bytes(1),
        )
        return data


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_margin(margin: float) -> None:
    if not 0.0 <= margin < 1.0:
        raise IsoformerError(f"memory margin {margin} is outside [0, 1)")


# --------------------------------------------------------------------------- measuring one step

class _CudaAutocastPolicy(TorchFunctionMode):
    """Under CPU autocast, run in float32 what CUDA autocast runs in float32.

    CPU autocast leaves LayerNorm, softmax and the like in bfloat16 where CUDA's casts them to
    float32 (and so saves float32 tensors for the backward pass): with this mode the CPU pass
    keeps what a GPU pass would.
    """

    # The operators of CUDA's float32 list (torch.amp docs) these models and their losses use.
    FLOAT32_FUNCTIONS = frozenset({
        F.layer_norm, F.group_norm, F.softmax, F.log_softmax, F.mse_loss, F.softplus,
        F.normalize, F.cosine_similarity,
        torch.softmax, torch.log_softmax, torch.Tensor.softmax, torch.Tensor.log_softmax,
        torch.exp, torch.Tensor.exp, torch.expm1, torch.log, torch.Tensor.log, torch.log1p,
        torch.pow, torch.Tensor.pow, torch.Tensor.__pow__, torch.Tensor.__rpow__,
        torch.Tensor.__rtruediv__, torch.rsqrt, torch.Tensor.rsqrt, torch.reciprocal,
        torch.Tensor.reciprocal, torch.sum, torch.Tensor.sum, torch.cumsum, torch.Tensor.cumsum,
        torch.norm, torch.Tensor.norm,
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in self.FLOAT32_FUNCTIONS and torch.is_autocast_enabled("cpu"):
            def widen(value: Any) -> Any:
                low = (torch.bfloat16, torch.float16)
                return value.float() if isinstance(value, torch.Tensor) and value.dtype in low \
                    else value

            args = tuple(widen(a) for a in args)
            kwargs = {key: widen(value) for key, value in kwargs.items()}
            with torch.autocast("cpu", enabled=False):
                return func(*args, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def precision_context(precision: str) -> Iterator[None]:
    """The CPU stand-in for a Lightning precision's forward pass: bfloat16 autocast with CUDA's
    float32 operators for the mixed precisions (16-mixed measured as bf16: the same sizes),
    nothing otherwise (bf16-true casts the model itself, see `cast_for_precision`)."""
    if precision in MIXED_PRECISIONS:
        with torch.autocast("cpu", dtype=torch.bfloat16), _CudaAutocastPolicy():
            yield
    else:
        yield


def cast_for_precision(module: nn.Module, precision: str) -> nn.Module:
    """bf16-true trains bfloat16 weights (an IsoFormer keeps its head float32); every other
    precision keeps float32 weights (64-true is measured in float32 and doubled)."""
    if precision == "bf16-true":
        module.to(torch.bfloat16)
    return module


def _bytes_scale(precision: str) -> int:
    return 2 if precision == "64-true" else 1


class _LiveBytes(TorchDispatchMode):
    """Bytes of the tensors created by operators while active, each storage counted from its
    creation until freed; `peak` is the most held at once."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        result = func(*args, **(kwargs or {}))
        for value in tree_flatten(result)[0]:
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                storage = value.untyped_storage()
                key = id(storage)
                if key not in self._tracked:
                    size = storage.nbytes()
                    self._tracked.add(key)
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._freed, key, size)
        return result

    def _freed(self, key: int, size: int) -> None:
        self.live -= size
        self._tracked.discard(key)


@dataclass
class StepMemory:
    """What one training step of a module holds, measured on the CPU (bytes)."""

    saved: int  # tensors saved for the backward pass at the end of the forward pass
    outputs: int  # further tensors named as outputs (the encoders' outputs)
    peak: int  # the most held at once by tensors created during the forward and backward passes

    @property
    def kept(self) -> int:
        return self.saved + self.outputs

    @property
    def transient(self) -> int:
        return max(self.peak - self.kept, 0)


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def measure_step(forward: Callable[[], tuple[torch.Tensor, list[torch.Tensor]]],
                 exclude: nn.Module | None = None, precision: str = "32-true") -> StepMemory:
    """Run `forward()` (-> loss, outputs) under `precision_context(precision)`, then the backward
    pass from the loss (when it needs one), and measure them.

    Saved tensors are counted once per storage, the parameters and buffers of `exclude` left
    out; `outputs` (tensors alive at the end of the forward pass that nothing saved, e.g. an
    encoder's output read by the fusion) are counted once too. `exclude`'s gradients are freed as
    soon as they are accumulated, as if they were added into existing ones (gradient
    accumulation), so the peak counts the transient gradient of each parameter, not all of them.
    """
    excluded: set[int] = set()
    handles = []
    if exclude is not None:
        excluded = {_storage_key(t) for t in [*exclude.parameters(), *exclude.buffers()]}
        handles = [p.register_post_accumulate_grad_hook(_drop_grad)
                   for p in exclude.parameters() if p.requires_grad]
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in excluded and key not in seen:
            seen[key] = tensor.untyped_storage().nbytes()
        return tensor

    live = _LiveBytes()
    try:
        with live, torch.enable_grad():
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                with precision_context(precision):
                    loss, outputs = forward()
            saved = sum(seen.values())
            named = {}
            for tensor in outputs:
                key = _storage_key(tensor)
                if key not in excluded and key not in seen:
                    named[key] = tensor.untyped_storage().nbytes()
            del outputs
            if loss.requires_grad:
                loss.backward()
            del loss
    finally:
        for handle in handles:
            handle.remove()
    return StepMemory(saved=saved, outputs=sum(named.values()), peak=live.peak)


def _drop_grad(parameter: torch.Tensor) -> None:
    parameter.grad = None


def measure_training_step(model: IsoFormer, records: list[dict[str, Any]],
                          precision: str = "32-true") -> StepMemory:
    """One training step of `model` on `records` (forward, masked MSE, backward), measured
    directly: what `estimate_memory` extrapolates, kept = saved tensors + the encoders' outputs.
    The model should already be cast for `precision` (`cast_for_precision`) and in train mode."""
    from isoformer.model.prediction import predict_batch
    from isoformer.training.module import masked_mse

    hidden: list[torch.Tensor] = []
    handles = [encoder.register_forward_hook(lambda _m, _i, out: hidden.append(out.hidden))
               for encoder in model.encoders.values()]

    def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
        predictions = predict_batch(model, records)
        loss = masked_mse(predictions, torch.zeros_like(predictions))
        outputs = list(hidden)
        hidden.clear()
        return loss, outputs

    try:
        return measure_step(forward, exclude=model, precision=precision)
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------- curves over input length

def _fit(lengths: list[int], values: list[float]) -> tuple[np.ndarray, float]:
    """Least-squares a + b x + c x^2, x = L / max(L), through the points: the coefficients and the
    largest residual relative to the largest value."""
    x = np.asarray(lengths, dtype=np.float64) / max(lengths)
    design = np.stack([np.ones_like(x), x, x**2], axis=1)
    y = np.asarray(values, dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = np.abs(design @ coefficients - y).max() / max(np.abs(y).max(), 1.0)
    return coefficients, float(residual)


@dataclass
class _Curve:
    """Per-sample and per-step bytes of one quantity at a few lengths -> at any length."""

    lengths: list[int] = field(default_factory=list)
    points: dict[str, list[float]] = field(default_factory=dict)

    def add(self, length: int, **values: float) -> None:
        self.lengths.append(length)
        for name, value in values.items():
            self.points.setdefault(name, []).append(value)

    def at(self, length: int) -> tuple[dict[str, float], dict[str, float]]:
        """Each quantity at `length` (never negative), and each one's relative fit residual."""
        if self.lengths == [length]:
            return ({name: values[0] for name, values in self.points.items()},
                    dict.fromkeys(self.points, 0.0))
        result, residuals = {}, {}
        for name, values in self.points.items():
            coefficients, residuals[name] = _fit(self.lengths, values)
            x = length / max(self.lengths)
            result[name] = max(float(coefficients @ np.array([1.0, x, x * x])), 0.0)
        return result, residuals


def _add_point(curve: _Curve, length: int, run: Callable[[int], StepMemory]) -> None:
    """Measure at batch 1 and 2: per-sample = the difference, per-step = the rest."""
    one, two = run(1), run(2)
    values = {}
    for name in ("kept", "transient"):
        a, b = float(getattr(one, name)), float(getattr(two, name))
        per_sample = max(b - a, 0.0)
        values[name] = per_sample
        values[f"{name}_fixed"] = max(a - per_sample, 0.0)
    curve.add(length, **values)


def _component(name: str, kind: str, length: int, unit: str, curve: _Curve) -> ComponentMemory:
    values, residuals = curve.at(length)
    # What is kept is a sum of tensor sizes, each a polynomial in the length: a residual means
    # that the measurement changed regime. The transient peak is a maximum of such sums and
    # follows the fit only roughly: its residual is not reported.
    residual = max(residuals["kept"], residuals["kept_fixed"])
    return ComponentMemory(
        name, kind, length, unit,
        per_sample_bytes=values["kept"], fixed_bytes=values["kept_fixed"],
        transient_per_sample_bytes=values["transient"],
        transient_fixed_bytes=values["transient_fixed"],
        measured_lengths=tuple(curve.lengths), fit_residual=residual,
    )


# ----------------------------------------------------------------------------- the model's parts

def _random_sequence(rng: random.Random, modality: str, length: int) -> str:
    letters = _LETTERS[modality]
    return "".join(rng.choice(letters) for _ in range(length))


def _encoder_step(encoder: SequenceEncoder, sequences: list[str], precision: str,
                  dtypes: list[torch.dtype]) -> StepMemory:
    """A training step of `encoder` alone on `sequences`; its output is counted with the fusion,
    which reads it. The output's dtype is appended to `dtypes`."""
    inputs = encoder.tokenize(sequences)

    def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = encoder(inputs).hidden
        dtypes.append(hidden.dtype)
        return hidden.float().sum(), []

    memory = measure_step(forward, exclude=encoder, precision=precision)
    scale = _bytes_scale(precision)
    return StepMemory(scale * memory.saved, 0, scale * memory.peak)


def _measure_encoder(encoder_at: Callable[[int], SequenceEncoder], modality: str,
                     lengths: list[int], units: Callable[[int], int], precision: str,
                     rng: random.Random) -> tuple[_Curve, torch.dtype]:
    """The encoder at each length: `encoder_at(length)` gives the encoder to run and
    `units(length)` the letters of an input of that length."""
    curve = _Curve()
    dtypes: list[torch.dtype] = []
    for length in lengths:
        encoder = encoder_at(length)
        sequence = _random_sequence(rng, modality, units(length))
        _add_point(curve, length, lambda batch, e=encoder, s=sequence: _encoder_step(
            e, [s] * batch, precision, dtypes))
        del encoder  # a DNA encoder rebuilt for this window is freed before the next one
    return curve, dtypes[-1]


@dataclass
class _WindowEncoder:
    """What the short-window runs need of a full-window DNA encoder (Enformer, Borzoi), kept
    once the full model is freed."""

    config: EncoderConfig
    max_length: int  # the window, bp
    output_bins: int  # after the encoder's central crop
    output_bin: int  # bp per output bin
    window_multiple: int  # bp a window must be a multiple of

    @classmethod
    def of(cls, encoder: SequenceEncoder) -> _WindowEncoder:
        if encoder.config.kind == "enformer":
            output_bin = window_multiple = encoder.bin_size  # type: ignore[attr-defined]
        else:
            from isoformer.encoders.borzoi import BORZOI_BIN, BORZOI_TRANSFORMER_BIN

            output_bin, window_multiple = BORZOI_BIN, BORZOI_TRANSFORMER_BIN
        return cls(encoder.config, encoder.max_length, encoder.output_bins,  # type: ignore
                   output_bin, window_multiple)

    @property
    def crop_ratio(self) -> Fraction:
        """Output bins over input bins (896 / 1,536 for the official Enformer), approximated."""
        return Fraction(self.output_bins, self.max_length // self.output_bin).limit_denominator(48)

    def short_windows(self) -> list[int]:
        """1..4 times the shortest window (bp) that crops the same share of its bins to a whole,
        even-sided number of at least MIN_SHORT_BINS; the full window if it is not longer."""
        ratio = self.crop_ratio
        bins = ratio.denominator
        while not (bins >= MIN_SHORT_BINS and bins * ratio >= MIN_SHORT_BINS
                   and (bins - bins * ratio) % 2 == 0
                   and (bins * self.output_bin) % self.window_multiple == 0):
            bins += ratio.denominator
        windows = [k * bins * self.output_bin for k in range(1, 5)]
        return windows if windows[-1] < self.max_length else [self.max_length]

    def config_at(self, window: int) -> EncoderConfig:
        """The encoder's config at a short `window`, cropping the same share of its bins."""
        if window == self.max_length:
            return self.config
        output_bins = int(window // self.output_bin * self.crop_ratio)
        architecture = {**self.config.architecture,
                        _WINDOW_CROP_FIELD[self.config.kind]: output_bins}
        return dataclasses.replace(self.config, max_length=window, architecture=architecture)


def _measure_fusion(aggregator: nn.Module, head: nn.Module, inputs: dict[str, tuple[int, int]],
                    dtypes: dict[str, torch.dtype], trainable: dict[str, bool],
                    precision: str) -> _Curve:
    """Aggregation, head and loss at the config's token counts (`inputs`: modality -> (tokens,
    width)), every token valid; the encoders' outputs (the inputs here) are counted."""
    from isoformer.training.module import masked_mse

    modules = nn.ModuleList([aggregator, head])
    scale = _bytes_scale(precision)

    def run(batch: int) -> StepMemory:
        embeddings = {
            m: EncoderOutput(
                hidden=torch.randn(batch, length, width, dtype=dtypes[m]).requires_grad_(
                    trainable[m]),
                mask=torch.ones(batch, length, dtype=torch.bool),
            )
            for m, (length, width) in inputs.items()
        }
        present = {m: torch.ones(batch, dtype=torch.bool) for m in inputs}
        outputs = [e.hidden for e in embeddings.values()]

        def forward() -> tuple[torch.Tensor, list[torch.Tensor]]:
            # As IsoFormer.forward after the encoders: the head runs outside autocast.
            aggregated = aggregator(embeddings, present)
            with torch.autocast(device_type="cpu", enabled=False):
                predictions = head(aggregated.fused)
            return masked_mse(predictions, torch.zeros_like(predictions)), outputs

        memory = measure_step(forward, exclude=modules, precision=precision)
        # The inputs were made before the step: held throughout, on top of its peak.
        inputs_bytes = sum(t.untyped_storage().nbytes() for t in outputs)
        return StepMemory(scale * memory.saved, scale * memory.outputs,
                          scale * (memory.peak + inputs_bytes))

    curve = _Curve()
    _add_point(curve, sum(n for n, _ in inputs.values()), run)
    return curve


def parameter_memory(model: IsoFormer, precision: str, optimizer: str) -> dict[str, int]:
    """Parameters (all, trainable) and the bytes of weights, gradients and optimiser state."""
    scale = _bytes_scale(precision)
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


def _longest_tokens(encoder: SequenceEncoder, modality: str, units: int,
                    rng: random.Random) -> int:
    """Tokens of the longest input the encoder takes (`units` letters without N)."""
    sequence = _random_sequence(rng, modality, units)
    return int(encoder.tokenize([sequence])["input_ids"].shape[1])


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


# ---------------------------------------------------------------------------------- the estimate

def estimate_memory(config: RunConfig, gpu_memory_bytes: int | None = None,
                    margin: float = DEFAULT_MARGIN) -> MemoryEstimate:
    """Per-device memory of training `config` (see the module docstring), on the CPU.

    `gpu_memory_bytes` (e.g. `parse_size("80GB")`) adds a proposal: the largest micro-batch that
    fits the budget less `margin` and, with a whole gradient accumulation, makes up the config's
    effective batch (batch_size x accumulation x devices); when none fits,
    `proposal_error` says why. The caller's random state is left as it was.
    """
    _check_margin(margin)
    training = config.training
    precision = training.precision
    model_config, notes = random_init_config(resolve_model_config(config.model))
    world, strategy = _world(training, notes)
    accumulation, derived = _accumulation(training, world)  # a clear error if it does not divide
    rng = random.Random(0)
    curves: dict[str, tuple[str, int, str, _Curve]] = {}  # modality -> kind, length, unit, curve
    fusion_inputs: dict[str, tuple[int, int]] = {}  # modality -> tokens, width
    dtypes: dict[str, torch.dtype] = {}
    windows: dict[str, _WindowEncoder] = {}
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
                windows[modality] = _WindowEncoder.of(encoder)
                fusion_inputs[modality] = (encoder.output_bins,  # type: ignore[attr-defined]
                                           encoder.output_dim)
                continue
            units = encoder.max_length
            if modality == "dna" and model_config.dna_length is not None:
                units = min(units, model_config.dna_length)
            tokens = _longest_tokens(encoder, modality, units, rng)
            fusion_inputs[modality] = (tokens, encoder.output_dim)
            lengths = ([n for n in SHORT_TOKENS if n < tokens] if tokens > max(SHORT_TOKENS)
                       else [tokens])
            logger.info("memory estimate: running %s (%s) at %s tokens", modality, kind,
                        ", ".join(map(str, lengths)))
            units_per_token, specials = _TOKEN_KINDS[kind]
            curve, dtypes[modality] = _measure_encoder(
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

            def build(window: int, w: _WindowEncoder = window_encoder) -> SequenceEncoder:
                return cast_for_precision(build_encoder(w.config_at(window)), precision).train()

            curve, dtypes[modality] = _measure_encoder(build, modality, lengths,
                                                       lambda length: length, precision, rng)
            curves[modality] = (window_encoder.config.kind, window_encoder.max_length, "bp",
                                curve)
        logger.info("memory estimate: running the fusion at %s tokens",
                    ", ".join(f"{m} {n}" for m, (n, _) in fusion_inputs.items()))
        fusion = _measure_fusion(aggregator, head, fusion_inputs, dtypes, trainable, precision)
    components = [_component(m, *curves[m]) for m in model_config.modalities]
    components.append(_component("fusion", model_config.aggregation.kind,
                                 sum(n for n, _ in fusion_inputs.values()), "tokens", fusion))
    _adjust_for_devices(counts, world, strategy, notes)
    if precision == "16-mixed":
        notes.append("16-mixed is measured with bfloat16 autocast (the same sizes)")
    if precision == "64-true":
        notes.append("64-true is measured in float32 and doubled")
    worst = max(c.fit_residual for c in components)
    if worst > 0.01:
        notes.append(f"an activation curve departs from a + bL + cL^2 by {worst:.0%} at the "
                     "lengths run: its extrapolation is less certain")
    estimate = MemoryEstimate(
        precision=precision, optimizer=training.optimizer, components=components,
        batch_size=training.batch_size, accumulate_grad_batches=accumulation, devices=world,
        derived_accumulation=derived, margin=margin, gpu_memory_bytes=gpu_memory_bytes,
        notes=notes, **counts,
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
