"""What the estimate finds: each part's activations and FLOPs, the micro-batch proposal, the
whole estimate and its report."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from isoformer.encoders.base import EncoderConfig
from isoformer.errors import IsoformerError
from isoformer.training.memory.curves import Curve
from isoformer.training.memory.flops import DEFAULT_GPU_TFLOPS
from isoformer.training.memory.sizes import format_bytes, format_flops

# Share of the budget kept free for what the estimate leaves out (see docs/memory.md).
DEFAULT_MARGIN = 0.15


@dataclass
class ComponentMemory:
    """Activation memory and FLOPs of one part of the model at the config's input length."""

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
    # A training step's FLOPs (forward and backward), per sample and per step (about nothing:
    # FLOPs grow with the batch).
    flops_per_sample: float = 0.0
    fixed_flops: float = 0.0

    @classmethod
    def from_curve(cls, name: str, kind: str, length: int, unit: str,
                   curve: Curve) -> ComponentMemory:
        """The part at the config's `length`, from its curve over the lengths run."""
        values, residuals = curve.at(length)
        # What is kept is a sum of tensor sizes, each a polynomial in the length, and so are
        # the FLOPs: a residual means that the measurement changed regime. The transient peak
        # is a maximum of such sums and follows the fit only roughly: its residual is not
        # reported.
        residual = max(residuals["kept"], residuals["kept_fixed"], residuals["flops"])
        return cls(
            name, kind, length, unit,
            per_sample_bytes=values["kept"], fixed_bytes=values["kept_fixed"],
            transient_per_sample_bytes=values["transient"],
            transient_fixed_bytes=values["transient_fixed"],
            measured_lengths=tuple(curve.lengths), fit_residual=residual,
            flops_per_sample=values["flops"], fixed_flops=values["flops_fixed"],
        )

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
    """Per-device memory and FLOPs of one training step of a config (see the package
    docstring), and the compute of an epoch when the training split's size is known."""

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
    train_samples: int | None = None  # the training split's size, for the cost of an epoch
    gpu_tflops: float = DEFAULT_GPU_TFLOPS  # sustained throughput assumed per GPU

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

    @property
    def flops_per_sample(self) -> float:
        """A training step's FLOPs (forward and backward) per sample (every part)."""
        return sum(c.flops_per_sample for c in self.components)

    @property
    def fixed_flops(self) -> float:
        return sum(c.fixed_flops for c in self.components)

    @property
    def micro_batch(self) -> int:
        """The micro-batch the run would train at: the proposal's, else the config's."""
        return self.proposal.micro_batch if self.proposal is not None else self.batch_size

    def epoch_flops(self) -> float | None:
        """FLOPs of one epoch over the training split at `micro_batch` (None when its size is
        unknown); validation is not counted."""
        if self.train_samples is None:
            return None
        steps = math.ceil(self.train_samples / self.micro_batch)
        return self.train_samples * self.flops_per_sample + steps * self.fixed_flops

    def gpu_hours_per_epoch(self) -> float | None:
        """GPU-hours (devices x hours) of one epoch at `gpu_tflops` sustained."""
        flops = self.epoch_flops()
        return None if flops is None else flops / (self.gpu_tflops * 1e12) / 3600

    def propose(self, gpu_memory_bytes: int, margin: float | None = None) -> BatchProposal:
        """The largest micro-batch whose total fits the budget less the margin and which, with a
        whole gradient accumulation, makes up the effective batch; an error when none fits."""
        margin = self.margin if margin is None else margin
        check_margin(margin)
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
        lines.extend(self._compute_lines())
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def _compute_lines(self) -> list[str]:
        parts = ", ".join(f"{c.name} {format_flops(c.flops_per_sample)}"
                          for c in self.components)
        fixed = (f" + {format_flops(self.fixed_flops)} per step" if self.fixed_flops >= 1
                 else "")
        lines = [f"  compute per training sample (forward + backward): "
                 f"{format_flops(self.flops_per_sample)} ({parts}){fixed}"]
        epoch_flops, hours = self.epoch_flops(), self.gpu_hours_per_epoch()
        if epoch_flops is not None and hours is not None:
            lines.append(
                f"  an epoch of {self.train_samples:,} training samples at micro-batch "
                f"{self.micro_batch}: {format_flops(epoch_flops)}, {_gpu_time(hours)} at an "
                f"assumed {self.gpu_tflops:,.0f} TFLOP/s sustained (--gpu-tflops)"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON), with the totals at the config's micro-batch and at 1 and the
        compute per sample and per epoch."""
        data = dataclasses.asdict(self)
        data.update(
            effective_batch=self.effective_batch,
            total_bytes_at_batch_size=self.total_bytes(self.batch_size),
            total_bytes_at_micro_batch_1=self.total_bytes(1),
            flops_per_sample=self.flops_per_sample,
            fixed_flops=self.fixed_flops,
            epoch_flops=self.epoch_flops(),
            gpu_hours_per_epoch=self.gpu_hours_per_epoch(),
        )
        return data


def _gpu_time(hours: float) -> str:
    """"12.3 GPU-hours", "4.5 GPU-minutes", "0.27 GPU-seconds"."""
    if hours >= 1:
        return f"{hours:,.1f} GPU-hours"
    if hours * 60 >= 1:
        return f"{hours * 60:.1f} GPU-minutes"
    return f"{hours * 3600:.2g} GPU-seconds"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_margin(margin: float) -> None:
    if not 0.0 <= margin < 1.0:
        raise IsoformerError(f"memory margin {margin} is outside [0, 1)")

