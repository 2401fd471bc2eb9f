"""What robustkd's skorch estimators share: defaults, seeding, interruption, device and input handling."""
import contextlib

import numpy as np
import torch
from sklearn.base import clone
from sklearn.metrics import accuracy_score

from . import _rng
from ._validation import (as_array, check_device, check_images, check_params, encode_labels, is_index_labels,
                          labeled_subset, not_fitted_error, unlabeled_mask)
from ._interrupts import is_ctrl_c, watch_sigint
from ._layout import channels_last, channels_last_training
from ._rng import check_seed, derive_seed

__all__ = ["SeededNetMixin", "net_defaults"]


def net_defaults(kwargs):
    """robustkd's defaults for skorch arguments: training batches are shuffled (skorch's are not)."""
    kwargs.setdefault("iterator_train__shuffle", True)
    return kwargs


class SeededNetMixin:
    """Mixin for robustkd's skorch nets (requires ``self.random_state``).

    * **Seeding.** With ``random_state`` set, module initialisation uses ``random_state`` and
      epoch ``e`` draws its shuffling, dropout and attack starts from a seed derived from
      ``(random_state, e)`` alone, so a fit resumed from a checkpoint after epoch ``e`` continues
      exactly as an uninterrupted fit would. The caller's global RNG state is saved before the
      fit and restored after it, also when the fit raises. CUDA's RNG is handled too.
    * **Interruption.** skorch's ``fit`` swallows ``KeyboardInterrupt`` and returns a half-trained
      net. Here the epochs that finished stay in ``history``, the ``on_train_end`` callbacks run
      as in skorch, and then the ``KeyboardInterrupt`` propagates, so a script stops instead of
      carrying on with a model that trained fewer epochs than asked. A callback that stops the
      fit the skorch way (``EarlyStopping`` raises ``KeyboardInterrupt``) still ends it normally
      (see :mod:`robustkd._interrupts`).
    * **Devices.** ``device="auto"`` is resolved to ``"cuda"`` when CUDA is available, else
      ``"cpu"``, when the net is initialised; ``"cuda"`` on a machine without CUDA is a clear error.
    * **Inputs.** pandas objects and float64/integer arrays are converted; labels that are not
      integer class indices (e.g. strings) are encoded through ``classes_`` and ``predict``
      returns them.
    """

    #: ``{parameter: [allowed, ...]}`` (see :func:`robustkd._validation.check_params`), checked before training.
    _parameter_constraints = {}

    def check_training_readiness(self):
        """Check the parameters against ``_parameter_constraints``, then skorch's readiness checks."""
        check_params(self, self._parameter_constraints)
        super().check_training_readiness()

    # ------------------------------------------------------------------ RNG
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
        return _rng.fork(None if seed is None else seed + offset, cuda=str(self.device).startswith("cuda"))

    _restore_rng = staticmethod(_rng.restore)
    #: Whether ``fit`` takes samples labelled -1 as unlabeled (scikit-learn's semi-supervised convention).
    accepts_unlabeled = False
    #: Parameters holding fitted models the estimator reads, not hyper-parameters: ``clone`` (and a
    #: :class:`~robustkd.TeacherPool`'s copies) share them instead of cloning them unfitted.
    _shared_params = ()

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        return type(self)(**{k: v if k in self._shared_params else clone(v, safe=False) for k, v in params.items()})

    def _restore_caller_rng(self):
        self._restore_rng(self.__dict__.pop("caller_rng_state_", None))

    # ------------------------------------------------------------ lifecycle
    def initialize(self):
        """Resolve and check ``device`` (``"auto"`` becomes ``"cuda"`` or ``"cpu"``), then initialise."""
        self.device = check_device(self.device)
        return super().initialize()

    def initialize_module(self):
        with self.seeded_rng(0):
            return super().initialize_module()

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._restore_caller_rng()
        self.caller_rng_state_ = self._fork_seed(1)
        return super().on_train_begin(net, X=X, y=y, **kwargs)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        seed = check_seed(self.random_state)
        if seed is not None:  # epoch e's randomness depends on (random_state, e) only
            torch.manual_seed(derive_seed(seed, len(self.history)))

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self._restore_caller_rng()
        return super().on_train_end(net, X=X, y=y, **kwargs)

    def _layout_probe(self, X):
        """A few training inputs for the channels-last check (None when X is not an array of images)."""
        if isinstance(X, np.ndarray) and X.ndim == 4 and np.issubdtype(X.dtype, np.number) and len(X):
            return torch.as_tensor(np.asarray(X[:8], dtype=np.float32), device=self.device)
        if torch.is_tensor(X) and X.dim() == 4 and len(X):
            return X[:8].to(device=self.device, dtype=torch.float32)
        return None

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        with watch_sigint() as sigint:
            try:
                # on the CPU, train with channels-last weights (faster convolutions and pooling), teachers likewise
                probe = self._layout_probe(X)
                with channels_last_training(self.module_, probe), \
                        channels_last(getattr(self, "frozen_teachers_", None), probe):
                    return super().fit_loop(X, y, epochs=epochs, **fit_params)
            except KeyboardInterrupt as exc:
                # Ctrl-C is re-raised in notify("on_train_end"), after skorch's own handling; a callback's
                # stop (skorch's EarlyStopping raises KeyboardInterrupt too) ends the fit normally
                if is_ctrl_c(exc, sigint()):
                    self.interrupted_ = True
                raise
            except BaseException:
                self._restore_caller_rng()
                raise

    def notify(self, method_name, **cb_kwargs):
        super().notify(method_name, **cb_kwargs)
        if method_name == "on_train_end" and self.__dict__.pop("interrupted_", False):
            raise KeyboardInterrupt

    def check_is_fitted(self, attributes=None, *args, **kwargs):
        """Raise skorch's ``NotInitializedError`` (a scikit-learn ``NotFittedError``) before ``fit``."""
        if not getattr(self, "initialized_", False):
            raise not_fitted_error(self)
        return super().check_is_fitted(attributes, *args, **kwargs)

    # --------------------------------------------------------------- inputs
    def _encode_y(self, y):
        if y is None or not getattr(self, "encodes_labels_", False):
            return y
        return encode_labels(y, len(y), len(self.classes_), classes=self.classes_,
                             unlabeled=self.accepts_unlabeled).numpy()

    def get_dataset(self, dataset, y=None):
        """As skorch's, but pandas objects become arrays, numeric arrays are cast to float32 (the
        modules' dtype), integral float labels to int64, and non-index labels are encoded."""
        dataset, y = as_array(dataset), as_array(y)
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
        return super().get_dataset(dataset, self._encode_y(y))

    def check_data(self, X, y=None):
        """Check array data before training: lengths, finiteness, range, shape and labels.

        Labels that are not integer class indices (strings, for instance) are encoded through
        ``classes_`` (their sorted unique values). A trial forward pass of two samples turns
        shape mismatches into a ValueError that names the input shape.
        """
        X, y = as_array(X), as_array(y)
        labeled = y
        if y is not None and self.accepts_unlabeled and np.ndim(y) == 1:
            mask = unlabeled_mask(y)
            if mask.any():   # classes come from the labeled samples (all -1: the subclass decides)
                labeled = y[torch.from_numpy(~mask)] if isinstance(y, torch.Tensor) else np.asarray(y)[~mask]
        super().check_data(X, labeled if labeled is None or len(labeled) else y)
        if y is not None:
            self.encodes_labels_ = bool(len(labeled)) and not is_index_labels(labeled)
        if y is None or isinstance(X, torch.utils.data.Dataset) or not isinstance(X, (np.ndarray, torch.Tensor)):
            return
        if np.ndim(y) != 1:
            raise ValueError(f"y must be one-dimensional; got shape {np.shape(y)}")
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: len(X)={len(X)}, len(y)={len(y)}")
        X_t = check_images(X, clip_min=self.clip_min, clip_max=self.clip_max)
        module = self.module_
        was_training = module.training
        try:
            with torch.no_grad():
                n_outputs = module.eval()(X_t[:2].to(self.device)).shape[1]
        except RuntimeError as exc:
            hint = (" (images need a channel axis: pass X[:, None] for shape "
                    f"{(len(X_t), 1, *X_t.shape[1:])})" if X_t.dim() == 3 else "")
            raise ValueError(f"the module cannot take inputs of shape {tuple(X_t.shape[1:])}{hint}: {exc}") \
                from exc
        finally:
            module.train(was_training)
        self.check_outputs(X_t[:2].to(self.device), n_outputs)
        if self.encodes_labels_:
            if len(self.classes_) > n_outputs:
                raise ValueError(f"y has {len(self.classes_)} distinct labels but the module has {n_outputs} "
                                 "outputs")
        else:
            encode_labels(y, len(X_t), n_outputs, unlabeled=self.accepts_unlabeled)

    def check_outputs(self, X, n_outputs):
        """Hook of ``check_data``: check more about the module on two samples ``X`` (a tensor on the
        net's device) after the trial forward pass gave ``n_outputs`` logits. Nothing by default."""

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labeled samples of ``(X, y)``; samples labelled -1 (unlabeled) are skipped.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.
        y : array-like of shape (n_samples,)
            Labels, -1 for an unlabeled sample (skipped).
        sample_weight : array-like of shape (n_samples,), optional
            Sample weights.

        Returns
        -------
        float
            The accuracy (``GridSearchCV``'s default score).
        """
        X, y, sample_weight = labeled_subset(X, y, sample_weight)
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    def predict(self, X):
        """Predicted labels: ``classes_`` entries when ``fit`` got non-index labels, else logit indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted labels.
        """
        indices = super().predict(X)
        return np.asarray(self.classes_)[indices] if getattr(self, "encodes_labels_", False) else indices
