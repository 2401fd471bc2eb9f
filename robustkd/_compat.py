"""Compatibility shims for third-party packages.

advertorch 0.2.3 (its last release) does
``from torch.autograd.gradcheck import zero_gradients`` at import time, a helper
that PyTorch removed in 1.9. Without it, ``import advertorch.attacks`` fails on
every modern torch. We define the helper where advertorch looks for it, with
the behaviour it had in torch (zero the ``.grad`` of a tensor or of every tensor
in an iterable), and only if torch does not provide it. Import advertorch through
:func:`import_advertorch_attacks` so the shim is always in place first.
"""
import collections.abc
import importlib

import torch

# ``import torch.autograd.gradcheck as m`` would bind the *function* gradcheck,
# which shadows the module of the same name on ``torch.autograd``.
_gradcheck = importlib.import_module("torch.autograd.gradcheck")

__all__ = ["import_advertorch_attacks"]


def _zero_gradients(x):
    """Zero the gradient of ``x`` (a tensor or an iterable of tensors) in place."""
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, collections.abc.Iterable):
        for elem in x:
            _zero_gradients(elem)


if not hasattr(_gradcheck, "zero_gradients"):
    _gradcheck.zero_gradients = _zero_gradients


def import_advertorch_attacks():
    """Return the ``advertorch.attacks`` module, with the shim installed."""
    import advertorch.attacks

    return advertorch.attacks
