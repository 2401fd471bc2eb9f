"""What robustkd's skorch estimators share: logits defaults, seeding, input checks."""
import contextlib
import numbers

import numpy as np
import torch

from ._inputs import check_images, encode_labels

__all__ = ["SeededNetMixin", "check_random_state_int", "check_seed"]


def check_seed(random_state, name="random_state"):
    """Return ``random_state`` (None or a non-negative int) or raise naming it."""
    if random_state is None:
        return None
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise ValueError(f"{name} must be None or a non-negative int; got {name}={random_state!r}")
    return int(random_state)


def check_random_state_int(random_state, n):
    """Draw ``n`` independent integer seeds from ``random_state`` (all None if it is None)."""
    seed = check_seed(random_state)
    if seed is None:
        return [None] * n
    return [int(s) for s in np.random.RandomState(seed).randint(0, 2**31 - 1, size=n)]


class SeededNetMixin:
    """Mixin for skorch nets with a ``random_state`` parameter.

    With ``random_state`` set, module initialisation, batch shuffling, dropout and
    attack random starts draw from torch's RNG seeded with it, and the caller's
    global RNG state is saved before and restored after the fit, so user code that
    seeds torch itself is not disturbed. CUDA RNG is seeded too when the net runs
    on CUDA. Requires ``self.random_state``.
    """

    @contextlib.contextmanager
    def seeded_rng(self, offset=0):
        """Within the block, torch's RNG is seeded with ``random_state + offset`` (if set)."""
        state = self._fork_seed(offset)
        try:
            yield
        finally:
            self._restore_rng(state)

    def _fork_seed(self, offset):
        seed = check_seed(self.random_state)
        if seed is None:
            return None
        cuda = str(self.device).startswith("cuda") and torch.cuda.is_available()
        state = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None)
        torch.manual_seed(seed + offset)
        return state

    @staticmethod
    def _restore_rng(state):
        if state is None:
            return
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state_all(state[1])

    def initialize_module(self):
        with self.seeded_rng(0):
            return super().initialize_module()

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.caller_rng_state_ = self._fork_seed(1)
        return super().on_train_begin(net, X=X, y=y, **kwargs)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self._restore_rng(getattr(self, "caller_rng_state_", None))
        self.caller_rng_state_ = None
        return super().on_train_end(net, X=X, y=y, **kwargs)

    def get_dataset(self, dataset, y=None):
        """As skorch's, but numeric arrays are cast to float32 (the modules' dtype; numpy defaults to
        float64) and integral float labels to int64 (cross-entropy needs class indices)."""
        if isinstance(dataset, np.ndarray) and dataset.dtype != np.float32 and (
                np.issubdtype(dataset.dtype, np.number) or dataset.dtype == bool):
            dataset = dataset.astype(np.float32)
        elif isinstance(dataset, torch.Tensor) and dataset.dtype != torch.float32 and not dataset.is_complex():
            dataset = dataset.float()
        if isinstance(dataset, (np.ndarray, torch.Tensor)) and dataset.dtype in (np.float32, torch.float32):
            finite = np.isfinite(dataset).all() if isinstance(dataset, np.ndarray) else torch.isfinite(dataset).all()
            if not finite:
                raise ValueError("X contains NaN or infinite values")
        if isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        return super().get_dataset(dataset, y)

    def check_data(self, X, y=None):
        """Check array data before training: lengths, finiteness, range, shape and labels.

        A trial forward pass of two samples turns shape mismatches into a ValueError that
        names the input shape, instead of an error deep inside torch.
        """
        super().check_data(X, y)
        if y is None or isinstance(X, torch.utils.data.Dataset) or not isinstance(X, (np.ndarray, torch.Tensor)):
            return
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: len(X)={len(X)}, len(y)={len(y)}")
        X_t = check_images(X, clip_min=self.clip_min, clip_max=self.clip_max)
        module = self.module_
        was_training = module.training
        try:
            with torch.no_grad():
                n_outputs = module.eval()(X_t[:2].to(self.device)).shape[1]
        except RuntimeError as exc:
            raise ValueError(f"the module cannot take inputs of shape {tuple(X_t.shape[1:])}: {exc}") from exc
        finally:
            module.train(was_training)
        encode_labels(y, len(X_t), n_outputs)
