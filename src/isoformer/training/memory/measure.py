"""One training step measured on the CPU: the precision it runs in, what autograd saves for the
backward pass, the peak of the tensors created meanwhile and the FLOPs of the forward and backward
passes (see the package docstring)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from isoformer.model.isoformer import IsoFormer
from isoformer.training.memory.flops import flop_counter

MIXED_PRECISIONS = ("bf16-mixed", "16-mixed")


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


def bytes_scale(precision: str) -> int:
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
class StepMeasurement:
    """What one training step of a module holds (bytes) and computes, measured on the CPU."""

    saved: int  # tensors saved for the backward pass at the end of the forward pass
    outputs: int  # further tensors named as outputs (the encoders' outputs)
    peak: int  # the most held at once by tensors created during the forward and backward passes
    flops: int = 0  # forward and backward, as `flops.flop_counter` counts them

    @property
    def kept(self) -> int:
        return self.saved + self.outputs

    @property
    def transient(self) -> int:
        return max(self.peak - self.kept, 0)


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def measure_step(forward: Callable[[], tuple[torch.Tensor, list[torch.Tensor]]],
                 exclude: nn.Module | None = None, precision: str = "32-true") -> StepMeasurement:
    """Run `forward()` (-> loss, outputs) under `precision_context(precision)`, then the backward
    pass from the loss (when it needs one), and measure them and count their FLOPs.

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
        with live, flop_counter() as counter, torch.enable_grad():
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
    return StepMeasurement(saved=saved, outputs=sum(named.values()), peak=live.peak,
                           flops=counter.get_total_flops())


def _drop_grad(parameter: torch.Tensor) -> None:
    parameter.grad = None


def measure_training_step(model: IsoFormer, records: list[dict[str, Any]],
                          precision: str = "32-true") -> StepMeasurement:
    """One training step of `model` on `records` (forward, masked MSE, backward), measured
    directly: what `estimate_memory` extrapolates, kept = saved tensors + the encoders' outputs,
    and the step's FLOPs.
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
