"""Learning-rate schedules of robust training, as skorch callbacks (exported by :mod:`robustkd.callbacks`)."""
import warnings

from skorch.callbacks import Callback

from ..exceptions import RobustKDWarning

__all__ = ["OneCycleLR"]


class OneCycleLR(Callback):
    """A one-cycle learning rate, set before every training batch: up linearly, then down to the end.

    The schedule of fast adversarial training (Wong, Rice and Kolter, 2020: from 0 to the peak at 2/5 of
    training, back to 0 at the end; Smith's one-cycle policy). The learning rate at progress
    ``t = (epoch + batch / batches_per_epoch) / max_epochs`` in [0, 1] is ``max_lr`` times
    ``start + (1 - start) * t / pct_start`` before the peak and ``1 + (end - 1) * (t - pct_start) /
    (1 - pct_start)`` after it. Progress is computed from the net's ``history`` and its ``max_epochs``, so a
    fit that trains the remaining epochs of ``max_epochs`` (``partial_fit(X, y, epochs=k)``,
    :func:`robustkd.persistence.fit_resumable`) continues the same schedule; ``batches_per_epoch`` is that
    of the current training split. skorch's ``warm_start`` trains ``max_epochs`` *more* epochs, past the
    cycle's end: those run at ``end * max_lr`` and a warning says so. The epoch's last rate is recorded in
    ``history`` as ``lr``.

    Parameters
    ----------
    max_lr : float, optional
        The peak; default the net's ``lr``.
    pct_start : float, default=0.4
        Share of training spent going up, in (0, 1).
    start : float, default=0.0
        First rate, as a share of ``max_lr``, in [0, 1].
    end : float, default=0.0
        Last rate, as a share of ``max_lr``, in [0, 1].

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> from robustkd.callbacks import OneCycleLR
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm_rs", max_epochs=5, lr=0.002,
    ...                          train_split=None, verbose=0, callbacks=[OneCycleLR()])
    >>> [round(lr, 4) for lr in net.fit(X[:256], y[:256]).history[:, "lr"]]  # 2 batches per epoch: t = 0.1, 0.3, ...
    [0.0005, 0.0015, 0.0017, 0.001, 0.0003]
    """

    def __init__(self, max_lr=None, pct_start=0.4, start=0.0, end=0.0):
        self.max_lr = max_lr
        self.pct_start = pct_start
        self.start = start
        self.end = end

    def rate(self, t, max_lr):
        """The learning rate at progress ``t`` in [0, 1] for a peak ``max_lr``."""
        if t <= self.pct_start:
            return max_lr * (self.start + (1 - self.start) * t / self.pct_start)
        return max_lr * (1 + (self.end - 1) * (t - self.pct_start) / (1 - self.pct_start))

    def on_train_begin(self, net, **kwargs):
        if not 0 < self.pct_start < 1:
            raise ValueError(f"pct_start must be in (0, 1); got pct_start={self.pct_start!r}")
        for name in ("start", "end"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]; got {name}={getattr(self, name)!r}")
        if self.max_lr is not None and not self.max_lr > 0:
            raise ValueError(f"max_lr must be > 0; got max_lr={self.max_lr!r}")

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        batch_size = net.get_params_for("iterator_train").get("batch_size", net.batch_size)
        self.batches_ = max(1, -(-len(dataset_train) // batch_size)) if dataset_train is not None else 1
        self.epoch_, self.batch_ = len(net.history) - 1, 0
        if self.epoch_ >= net.max_epochs:
            warnings.warn(f"OneCycleLR: epoch {self.epoch_ + 1} is past the cycle of max_epochs={net.max_epochs} "
                          f"epochs (warm_start trains max_epochs more); it runs at end * max_lr = "
                          f"{self.end} * max_lr", RobustKDWarning, stacklevel=2)

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        t = min(1.0, (self.epoch_ + self.batch_ / self.batches_) / net.max_epochs)
        self.lr_ = self.rate(t, net.lr if self.max_lr is None else self.max_lr)
        for group in net.optimizer_.param_groups:
            group["lr"] = self.lr_
        self.batch_ += 1

    def on_epoch_end(self, net, **kwargs):
        if hasattr(self, "lr_"):
            net.history.record("lr", self.lr_)
