"""Memory layout of a model's weights while robustkd runs it: channels-last on the CPU.

PyTorch's CPU kernels for 2-D max pooling and convolution are much faster on channels-last
tensors than on the default NCHW layout (measured here on the SmallCNN: max pooling 17x, a whole
forward pass 2-4x, forward and backward 1.4-1.8x). A convolution whose weight is channels-last
produces channels-last activations, so converting the 4-D weights is enough (with explicit
channels-last strides: a weight with one input channel is "contiguous" both ways, and PyTorch then
follows the NCHW input); the inputs and the attacks stay as they are. The outputs are the same up to
float rounding (about 1e-7 on logits).
"""
import contextlib

import torch
from torch import nn

__all__ = ["channels_last", "channels_last_training"]


def _convertible(module, probe):
    if not (isinstance(module, nn.Module) and torch.is_tensor(probe) and probe.device.type == "cpu"):
        return False
    params = list(module.parameters())
    if any(nn.parameter.is_lazy(p) for p in params):   # not initialised yet: nothing to lay out
        return False
    return any(p.dim() == 4 for p in params)


@contextlib.contextmanager
def channels_last(module, probe):
    """Context in which ``module``'s 4-D parameters are channels-last, when that is safe and on the CPU.

    The conversion is kept only if the module, run on ``probe`` (a few inputs), gives the same
    logits as before (within 1e-4) without error: a module that ``view``s its activations, for
    instance, is left as it is. On exit every parameter gets back its original tensor, bit for bit.

    Parameters
    ----------
    module : torch.nn.Module or any object
        The model; anything else, or inputs that are not CPU tensors, is left alone.
    probe : torch.Tensor
        A few inputs of the shape the module will see, on its device.

    Yields
    ------
    module
        The same object.
    """
    converted = _convert(module, probe)
    try:
        yield module
    finally:
        for p, data in converted:
            p.data = data


def _convert(module, probe):
    """Make the 4-D parameters channels-last if the module's eval-mode outputs on ``probe`` stay the same;
    return ``[(parameter, original tensor)]`` of what was converted (empty when nothing was)."""
    if not _convertible(module, probe):
        return []
    params = [p for p in module.parameters() if p.dim() == 4]
    originals = [p.data for p in params]
    was_training = module.training
    module.eval()   # no dropout: the probe draws no random numbers
    with torch.no_grad():
        try:
            before = module(probe)
            for p in params:
                p.data = torch.empty_like(p.data, memory_format=torch.channels_last).copy_(p.data)
            same = torch.allclose(module(probe), before, rtol=1e-4, atol=1e-4)
        except Exception:  # noqa: BLE001 (any failure on the probe: leave the module as it is)
            same = False
    module.train(was_training)
    if not same:
        for p, data in zip(params, originals):
            p.data = data
        return []
    return list(zip(params, originals))


@contextlib.contextmanager
def channels_last_training(module, probe):
    """Context in which ``module`` trains with channels-last 4-D weights, when that is safe and on the CPU.

    As :func:`channels_last`, but for weights that change: on exit the trained values are copied back
    into the original (NCHW) tensors, which the parameters get back, so the model saved, pickled or
    moved afterwards is laid out as before. A forward and backward pass of a small CNN is 1.4-1.5x
    faster this way on this machine's CPU (``benchmarks/hot_loops.py``); the trained weights differ
    from an NCHW run by float rounding only. Optimizer state created in the block stays channels-last,
    which the optimizers handle.

    Parameters
    ----------
    module : torch.nn.Module or any object
        The model being trained.
    probe : torch.Tensor or None
        A few training inputs on the module's device (None: nothing is converted).

    Yields
    ------
    module
        The same object.
    """
    converted = _convert(module, probe)
    try:
        yield module
    finally:
        with torch.no_grad():
            for p, data in converted:
                data.copy_(p.data)
                p.data = data
