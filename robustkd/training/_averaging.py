"""Weight averaging as a skorch callback (exported by :mod:`robustkd.callbacks`)."""
import numbers

import torch
from skorch.callbacks import Callback

__all__ = ["WeightAveraging"]


class WeightAveraging(Callback):
    """An exponential moving average of the module's weights, which the net holds after ``fit``.

    After every training batch, each floating-point parameter and buffer ``a`` of ``net.module_`` is averaged
    into ``a_avg <- d * a_avg + (1 - d) * a`` with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` earlier
    updates (the short warm-up keeps the first, random weights from lingering); integer buffers are copied.
    When training ends the averaged weights are loaded into the module (the net predicts and is saved with them)
    and the trained ones are kept here, so that a fit that continues (``partial_fit``, ``warm_start``,
    :func:`robustkd.persistence.fit_resumable`) starts again from the trained weights and the average goes on
    exactly as if the fit had not stopped. A fit that re-initialises the net starts a new average. Validation
    scores during training (skorch's ``valid_loss``, :class:`~robustkd.callbacks.RobustAccuracy`) are those of
    the trained weights, not of the average. Only ``module_`` is averaged: modules that serve only the loss
    (a distiller's ``feature_adapters_``) are not. Another callback that sets the weights when training ends
    (:class:`~robustkd.callbacks.RobustEarlyStopping` with ``restore_best``) conflicts with this one: pass
    ``restore_best=False`` to keep the average.

    Averaging the weights along the last stretch of training (Polyak averaging; Izmailov et al., 2018; used by
    Gowal et al., 2020 for adversarially robust models) often generalises better than the last iterate.

    Parameters
    ----------
    decay : float, default=0.999
        The average's decay ``d`` per batch, in (0, 1): it spans about ``1 / (1 - decay)`` batches.

    Attributes
    ----------
    n_updates_ : int
        Batches averaged so far.

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> from robustkd.callbacks import WeightAveraging
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), max_epochs=2, train_split=None,
    ...                          verbose=0, callbacks=[WeightAveraging(decay=0.9)]).fit(X[:256], y[:256])
    >>> dict(net.callbacks_)["WeightAveraging"].n_updates_   # 2 epochs of 2 batches
    4
    """

    def __init__(self, decay=0.999):
        self.decay = decay

    def initialize(self):
        self.n_updates_, self.average_, self.trained_ = 0, None, None
        return self

    def on_train_begin(self, net, **kwargs):
        if isinstance(self.decay, bool) or not isinstance(self.decay, numbers.Real) or not 0 < self.decay < 1:
            raise ValueError(f"decay must be a number in (0, 1); got decay={self.decay!r}")
        if self.trained_ is not None:   # a fit that continues: from the trained weights, not the average
            _load(net.module_, self.trained_)
            self.trained_ = None

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        state = _state(net.module_)
        with torch.no_grad():
            if self.average_ is None:
                self.average_ = {k: v.detach().clone() for k, v in state.items()}
            else:
                d = min(self.decay, (1 + self.n_updates_) / (10 + self.n_updates_))
                for k, v in state.items():
                    if v.is_floating_point():
                        self.average_[k].lerp_(v.detach(), 1 - d)
                    else:
                        self.average_[k].copy_(v)
        self.n_updates_ += 1

    def on_train_end(self, net, **kwargs):
        if self.average_ is None:
            return
        self.trained_ = {k: v.detach().clone() for k, v in _state(net.module_).items()}
        _load(net.module_, self.average_)


def _state(module):
    return dict(module.state_dict(keep_vars=True))


def _load(module, values):
    with torch.no_grad():
        for k, v in _state(module).items():
            v.copy_(values[k])
