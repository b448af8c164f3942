"""FLOPs of a step as `torch.utils.flop_counter` counts them (matmuls, convolutions, attention),
with the CPU's fused attention counted too.

On the CPU `F.scaled_dot_product_attention` runs `_scaled_dot_product_flash_attention_for_cpu`
(and its backward), which torch's counter has no formula for: without one, attention's two
matmuls (4 B L^2 d forward per layer, twice that backward) would count as nothing. They are
counted here as torch counts its GPU flash and memory-efficient kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

# Sustained bf16 throughput assumed for GPU-hours: about 40% of the 989 TFLOP/s dense peak of an
# H100 / H200 (benchmarks/gpu.py measures the real one).
DEFAULT_GPU_TFLOPS = 400.0

_aten = torch.ops.aten


def _cpu_attention_flops(query_shape: torch.Size, key_shape: torch.Size,
                         value_shape: torch.Size, *args: Any, out_shape: Any = None,
                         **kwargs: Any) -> int:
    """query, key, value: [B, H, L, E] (the mask and causality do not change the work done)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flops(grad_out_shape: torch.Size, query_shape: torch.Size,
                                  key_shape: torch.Size, value_shape: torch.Size, *args: Any,
                                  out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_ATTENTION_FLOPS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def flop_counter() -> FlopCounterMode:
    """A `FlopCounterMode` that prints nothing and counts the CPU's fused attention."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of running `step()` (forward and, if it runs one, backward)."""
    with flop_counter() as counter:
        step()
    return counter.get_total_flops()
