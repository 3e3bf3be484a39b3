"""The fast path for our UNets' sampling: BatchNorm folded into the convolutions, channels_last, bf16 autocast
where precision.choose_precision says so (measured: bf16 only where it is faster), inference mode, and on CUDA CUDA graphs through torch.compile(mode="reduce-overhead"). Results stay within bf16 tolerance of the
plain path (fp32 exactly the plain path's maths with precision="fp32").

Measured on 2-core CPUs (benchmarks/RESULTS.md): bf16 autocast speeds the course UNet up about 3x with AMX and
slows it down with AVX512-BF16 alone, hence the measurement; channels_last adds a little; batching does not matter much on a CPU (compute bound) and
torch.compile on the CPU saves too little to pay for its ~40 s of compilation on a 300-step run, so it is CUDA only.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from diffusionlab.precision import Precision, choose_precision


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of net for inference with every eval-mode BatchNorm that follows a convolution folded into it
    (conv weights and bias rescaled; the BatchNorm becomes Identity): the same function, one pass fewer per layer."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for seq in net.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and type(bn) is nn.BatchNorm2d:
                if bn.running_mean is None:
                    continue
                fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                seq._modules[a], seq._modules[b] = fused, nn.Identity()
    return net


class FastNet(nn.Module):
    """A UNet for inference on the fast path: same call signature (x, t, c) and fp32 contiguous outputs."""

    def __init__(self, net: nn.Module, precision: Precision, compile: bool, device: torch.device):
        super().__init__()
        self.net = fold_batchnorm(net)
        self.config = net.config  # the UNet's (UNetConfig)
        self.precision = precision
        self.autocast_dtype = precision.autocast_dtype
        self.device_type = device.type
        self.graphs = compile and device.type == "cuda"
        self._call = torch.compile(self.net, mode="reduce-overhead", dynamic=False) if self.graphs else self.net

    def forward(self, x: Tensor, t: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        return self._run(lambda inp: self._call(inp, t, c), x, graphs=self.graphs)

    def branches(self, x: Tensor, k: int, t: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        """UNet.branches on the fast path (eager: the shared encoder changes the batch size between halves)."""
        return self._run(lambda inp: self.net.branches(inp, k, t, c), x, graphs=False)

    def _run(self, fn, x: Tensor, graphs: bool) -> Tensor:
        with torch.inference_mode():
            x = x.contiguous(memory_format=torch.channels_last)
            dtype = self.autocast_dtype or torch.bfloat16
            with torch.autocast(self.device_type, dtype=dtype, enabled=self.autocast_dtype is not None):
                if graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                out = fn(x)
            out = out.float().contiguous()
        return out.clone()  # a normal tensor (not an inference tensor, not a CUDA-graph buffer)


def accelerate(model, compile: bool = True, precision: str | None = None):
    """Put a CourseModel (our checkpoints) on the fast path, in place, in `precision` (None: --precision, else
    $DIFFUSIONLAB_PRECISION, else auto); other models are returned unchanged."""
    from diffusionlab.course_model import CourseModel

    if not isinstance(model, CourseModel) or isinstance(model.net, FastNet):
        return model
    model.net = FastNet(model.net, choose_precision(model.device, precision), compile, model.device)
    model.precision = model.net.precision.name  # the protocol's: what the network now runs in
    return model
