"""How much GPU memory and compute a training run needs, estimated on the CPU before it starts.

    estimate = estimate_memory(load_preset("paper"), gpu_memory_bytes=parse_size("80GB"),
                               train_samples=GTEX_TRAINING_TRANSCRIPTS)  # isoformer.constants
    print(estimate.format())          # a few lines: weights, gradients, optimiser, activations
    estimate.proposal                 # micro-batch x accumulation reaching the effective batch
    estimate.total_bytes(8)           # per device at micro-batch 8
    estimate.flops_per_sample         # a training step's FLOPs (forward + backward) per sample
    estimate.gpu_hours_per_epoch()    # at an assumed 400 TFLOP/s sustained (`gpu_tflops`)

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
- FLOPs are counted on the same steps (`torch.utils.flop_counter`: matmuls, convolutions,
  attention, the CPU's fused attention included), per sample and fitted over length alike (they
  are exactly polynomial in it). An epoch's GPU-hours divide them by an assumed throughput: an
  estimate, not a measurement (benchmarks/gpu.py measures the real one).

The modules, by concept: `sizes` (size strings), `flops` (the FLOP counter), `measure` (one step
measured: precision, saved tensors, live bytes, FLOPs), `curves` (the fit over length), `parts`
(the encoders at short inputs, the fusion), `results` (the estimate and its report), `estimate`
(`estimate_memory`).
See docs/memory.md for the method and its checks.
"""

from isoformer.training.memory.estimate import (
    estimate_memory,
    parameter_memory,
    random_init_config,
)
from isoformer.training.memory.flops import DEFAULT_GPU_TFLOPS, count_flops, flop_counter
from isoformer.training.memory.measure import (
    cast_for_precision,
    measure_training_step,
    precision_context,
)
from isoformer.training.memory.results import BatchProposal, ComponentMemory, MemoryEstimate
from isoformer.training.memory.sizes import format_bytes, format_flops, parse_size

__all__ = [
    "DEFAULT_GPU_TFLOPS",
    "BatchProposal",
    "ComponentMemory",
    "MemoryEstimate",
    "cast_for_precision",
    "count_flops",
    "estimate_memory",
    "flop_counter",
    "format_bytes",
    "format_flops",
    "measure_training_step",
    "parameter_memory",
    "parse_size",
    "precision_context",
    "random_init_config",
]
