"""skorch callbacks of robust training: robustness on held-out data, model selection by it, the one-cycle
learning rate of fast adversarial training, a warm-up of the training budget, weight averaging, and the
distiller's teacher weights."""
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback

from .exceptions import RobustKDWarning
from .evaluation import robust_score
from .threat_models import training_eps, training_norm
from ._validation import NONNEGATIVE, POSITIVE, POSITIVE_INT, UNIT, Interval, check_params

__all__ = ["RobustAccuracy", "RobustEarlyStopping", "OneCycleSchedule", "EpsilonWarmup", "WeightAveraging",
           "TeacherWeights"]


class _CheckedCallback(Callback):
    """A callback whose parameters are checked against its ``_parameter_constraints`` when its net initialises."""

    _parameter_constraints = {}

    def initialize(self):
        check_params(self, self._parameter_constraints)
        return super().initialize()


class RobustAccuracy(_CheckedCallback):
    """Record accuracy under attack on a held-out slice after every epoch.

    The score lands in the net's ``history`` under ``name`` (shown by skorch's
    ``PrintLog`` when ``verbose``), e.g. ``net.history[:, "robust_acc"]``. Use data
    held out from training (not the test set) when the value guides model selection.

    Parameters
    ----------
    X, y : array-like
        The held-out slice (inputs in the attack's clip range, labels as the net was fitted on).
    attack : str, default="pgd"
        Attack name (see :func:`robustkd.attacks.available_attacks`).
    eps : float, default=0.1
        Attack budget.
    name : str, default="robust_acc"
        Key in ``history``.
    random_state : int, default=0
        Fixed, so epochs are compared on the same attack randomness.
    attack_params : dict, optional
        Passed to :func:`robustkd.robust_score` (``nb_iter``, ``batch_size``, ...).
        A plain parameter (not ``**kwargs``), so ``clone``, ``GridSearchCV`` and
        :class:`~robustkd.TeacherPool` can copy nets that carry this callback.

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, RobustAccuracy, SmallCNN, load_digits_images
    >>> X, y = load_digits_images()
    >>> cb = RobustAccuracy(X[1500:], y[1500:], attack="fgsm", eps=0.1)
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm", max_epochs=2,
    ...                          train_split=None, verbose=0, callbacks=[cb]).fit(X[:300], y[:300])
    >>> len(net.history[:, "robust_acc"])
    2
    """

    _parameter_constraints = {"eps": [NONNEGATIVE], "name": [str], "attack_params": [None, dict]}

    def __init__(self, X, y, attack="pgd", eps=0.1, name="robust_acc", random_state=0, attack_params=None):
        self.X = X
        self.y = y
        self.attack = attack
        self.eps = eps
        self.name = name
        self.random_state = random_state
        self.attack_params = attack_params

    def on_epoch_end(self, net, **kwargs):
        score = robust_score(net, self.X, self.y, self.attack, eps=self.eps, random_state=self.random_state,
                             **(self.attack_params or {}))
        net.history.record(self.name, score)


def _arrays(dataset):
    """Inputs and label indices of a skorch dataset (or a ``Subset`` of one, as ``ValidSplit`` makes)."""
    if isinstance(dataset, torch.utils.data.Subset):
        X, y = _arrays(dataset.dataset)
        idx = np.asarray(dataset.indices)
        return X[idx], y[idx]
    X = dataset.X["X"] if isinstance(dataset.X, dict) else dataset.X
    return X, dataset.y


class RobustEarlyStopping(_CheckedCallback):
    """Model selection by robust accuracy on the validation split, and a guard against catastrophic overfitting.

    After every epoch it attacks (up to ``max_samples``) validation samples with ``attack`` and with
    FGSM, records both accuracies in ``history`` (``valid_robust_acc``, ``valid_fgsm_acc``,
    ``valid_robust_best``), keeps the weights of the epoch with the best robust accuracy and, at the
    end of training, puts them back (``restore_best``): robust overfitting (Rice, Wong and Kolter,
    2020) makes the last epoch rarely the most robust. **Catastrophic overfitting** of single-step
    adversarial training (Wong et al., 2020) shows as robust accuracy collapsing while FGSM accuracy
    rises; when robust accuracy falls more than ``collapse`` below its best while FGSM accuracy is at
    least what it was then, it warns and, with ``stop_on_collapse``, ends the fit. ``patience`` ends it
    after that many epochs without a new best. The validation split is skorch's ``train_split``
    (e.g. ``ValidSplit(0.1)``): data held out from training, never the test set. A fit it ends records why
    in the last epoch's ``stopped_early`` (``"collapse"`` or ``"patience"``).

    Parameters
    ----------
    attack : str, default="pgd"
        The attack that measures robustness.
    eps : float, optional
        Its budget; defaults to the net's ``eps`` (an :class:`~robustkd.AdversarialTeacher`'s). For a net
        trained with an L2 attack, that eps is an L2 radius: ``"pgd"`` then means ``"pgd_l2"`` and the
        FGSM watch (an L-inf attack) is skipped (``valid_fgsm_acc`` is NaN, no collapse check).
    max_samples : int, default=500
        Validation samples attacked per epoch (the first ones).
    patience : int, optional
        Stop after this many epochs without improvement (None: never for that reason).
    collapse : float, default=0.2
        Drop of robust accuracy below its best that counts as catastrophic overfitting.
    stop_on_collapse : bool, default=True
        End the fit at catastrophic overfitting (the best epoch is restored all the same).
    restore_best : bool, default=True
        Load the best epoch's weights when training ends.
    random_state : int, default=0
        Seeds the attacks, the same every epoch.
    attack_params : dict, optional
        Passed to :func:`robustkd.robust_score` for ``attack``.

    Examples
    --------
    >>> from skorch.dataset import ValidSplit
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> from robustkd.callbacks import RobustEarlyStopping
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm_rs", eps=0.1, max_epochs=3,
    ...                          train_split=ValidSplit(5), verbose=0, callbacks=[RobustEarlyStopping()])
    >>> len(net.fit(X[:400], y[:400]).history[:, "valid_robust_acc"])
    3
    """

    _parameter_constraints = {"eps": [None, NONNEGATIVE], "max_samples": [POSITIVE_INT],
                              "patience": [None, POSITIVE_INT], "collapse": [Interval(0, 1, closed="right")],
                              "stop_on_collapse": [bool], "restore_best": [bool], "attack_params": [None, dict]}

    def __init__(self, attack="pgd", eps=None, max_samples=500, patience=None, collapse=0.2, stop_on_collapse=True,
                 restore_best=True, random_state=0, attack_params=None):
        self.attack = attack
        self.eps = eps
        self.max_samples = max_samples
        self.patience = patience
        self.collapse = collapse
        self.stop_on_collapse = stop_on_collapse
        self.restore_best = restore_best
        self.random_state = random_state
        self.attack_params = attack_params

    def on_train_begin(self, net, **kwargs):
        if self.eps is None and training_eps(net) is None:
            raise ValueError("RobustEarlyStopping needs eps: pass eps=... or use it on a net with an eps")
        self.best_, self.best_fgsm_, self.best_epoch_, self.best_state_, self.misses_ = -1.0, 0.0, None, None, 0

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if dataset_valid is None:
            raise ValueError("RobustEarlyStopping needs a validation split: set train_split, e.g. "
                             "skorch.dataset.ValidSplit(0.1) (data held out from training, never the test set)")
        X, y = _arrays(dataset_valid)
        labeled = np.asarray(y) != -1               # a distiller's unlabeled samples have no robust accuracy
        if not labeled.all():
            X, y = X[torch.from_numpy(labeled) if isinstance(X, torch.Tensor) else labeled], np.asarray(y)[labeled]
        X, y = X[:self.max_samples], np.asarray(y[:self.max_samples])
        eps = self.eps if self.eps is not None else training_eps(net)
        l2 = self.eps is None and training_norm(net) == "l2"   # eps is then an L2 radius
        attack = "pgd_l2" if l2 and self.attack == "pgd" else self.attack
        robust = robust_score(net.module_, X, y, attack, eps=eps, random_state=self.random_state,
                              **(self.attack_params or {}))
        fgsm = float("nan") if l2 else robust_score(net.module_, X, y, "fgsm", eps=eps)
        best = robust > self.best_
        net.history.record("valid_robust_acc", robust)
        net.history.record("valid_fgsm_acc", fgsm)
        net.history.record("valid_robust_best", bool(best))
        if best:
            self.best_, self.best_fgsm_, self.best_epoch_, self.misses_ = robust, fgsm, len(net.history), 0
            self.best_state_ = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
            return
        self.misses_ += 1
        if robust < self.best_ - self.collapse and fgsm >= self.best_fgsm_:
            warnings.warn(f"catastrophic overfitting at epoch {len(net.history)}: {self.attack} accuracy on the "
                          f"validation split fell from {self.best_:.3f} (epoch {self.best_epoch_}) to {robust:.3f} "
                          f"while FGSM accuracy rose to {fgsm:.3f}; use a random start ('fgsm_rs'), 'nfgsm' or a "
                          "smaller step" + (". Stopping; the best epoch is kept." if self.stop_on_collapse else ""),
                          RobustKDWarning, stacklevel=2)
            if self.stop_on_collapse:
                net.history.record("stopped_early", "collapse")
                raise KeyboardInterrupt   # skorch's way to end a fit; robustkd's nets end it normally
        if self.patience is not None and self.misses_ >= self.patience:
            net.history.record("stopped_early", "patience")
            raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        if self.restore_best and getattr(self, "best_state_", None) is not None:
            net.module_.load_state_dict(self.best_state_)


class TeacherWeights(Callback):
    """Record a distiller's mean teacher weights: per training batch, then per epoch.

    Every :class:`~robustkd.MultiTeacherDistiller` carries it by default (skorch's default
    callbacks plus this one). After each training batch it records ``weight_t<k>``, teacher k's
    mean weight over the batch (from the batch's cached teacher logits; with
    ``cache_teacher_outputs=False`` the teachers run once more), and after each epoch the mean
    over the epoch's batches, which :meth:`~robustkd.MultiTeacherDistiller.mean_teacher_weights`
    reads.

    Examples
    --------
    >>> from robustkd.callbacks import TeacherWeights
    >>> TeacherWeights()
    <TeacherWeights>
    """

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        Xi, yi = batch
        logits = net.teacher_logits(Xi)
        weights = net.batch_weights(Xi, torch.as_tensor(yi, device=logits.device).long(), logits)
        for k, w in enumerate(weights.mean(0).tolist()):
            net.history.record_batch(f"weight_t{k}", w)

    def on_epoch_end(self, net, **kwargs):
        batches = net.history[-1]["batches"]
        for k in range(len(net.teachers_)):
            values = [b[f"weight_t{k}"] for b in batches if f"weight_t{k}" in b]
            if values:
                net.history.record(f"weight_t{k}", float(np.mean(values)))

    def __repr__(self):
        return "<TeacherWeights>"


class _PerBatchSchedule(_CheckedCallback):
    """A schedule set before every training batch from the fit's progress in epochs, read from the net's
    ``history`` (so a resumed fit continues it) and the current training split's number of batches."""

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        batch_size = net.get_params_for("iterator_train").get("batch_size", net.batch_size)
        self.batches_ = max(1, -(-len(dataset_train) // batch_size)) if dataset_train is not None else 1
        self.epoch_, self.batch_ = len(net.history) - 1, 0

    def next_batch(self):
        """Epochs of training done before the batch that starts now (fractional), counting that batch."""
        done = self.epoch_ + self.batch_ / self.batches_
        self.batch_ += 1
        return done


class OneCycleSchedule(_PerBatchSchedule):
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
    >>> from robustkd.callbacks import OneCycleSchedule
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm_rs", max_epochs=5, lr=0.002,
    ...                          train_split=None, verbose=0, callbacks=[OneCycleSchedule()])
    >>> [round(lr, 4) for lr in net.fit(X[:256], y[:256]).history[:, "lr"]]  # 2 batches per epoch: t = 0.1, 0.3, ...
    [0.0005, 0.0015, 0.0017, 0.001, 0.0003]
    """

    _parameter_constraints = {"max_lr": [None, POSITIVE], "pct_start": [Interval(0, 1, closed="neither")],
                              "start": [UNIT], "end": [UNIT]}

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

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, **kwargs)
        if self.epoch_ >= net.max_epochs:
            warnings.warn(f"OneCycleSchedule: epoch {self.epoch_ + 1} is past the cycle of max_epochs={net.max_epochs} "
                          f"epochs (warm_start trains max_epochs more); it runs at end * max_lr = "
                          f"{self.end} * max_lr", RobustKDWarning, stacklevel=2)

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        t = min(1.0, self.next_batch() / net.max_epochs)
        self.lr_ = self.rate(t, net.lr if self.max_lr is None else self.max_lr)
        for group in net.optimizer_.param_groups:
            group["lr"] = self.lr_

    def on_epoch_end(self, net, **kwargs):
        if hasattr(self, "lr_"):
            net.history.record("lr", self.lr_)


class EpsilonWarmup(_PerBatchSchedule):
    """Ramp the training attack's budget up linearly over the first epochs, set before every training batch.

    Multi-step adversarial training of a small network from its first step can stall at chance level (its
    loss stays at ln C: Madry et al., 2018, saw it on low-capacity networks); starting from a small budget
    and growing it, as certified and adversarial training commonly do, lets the network learn the task
    first. At progress ``t = (epoch + batch / batches_per_epoch) / epochs`` the attack uses ``start + (1 -
    start) * t`` (at most 1) of the net's budget (``eps`` of an :class:`~robustkd.AdversarialTeacher`,
    ``student_eps`` of a distiller's adversarial student); at share 0 the batch trains on clean inputs.
    Only the crafting of training examples sees the share: robust scores and
    :class:`RobustEarlyStopping` always use the whole budget. Progress is read from the net's ``history``,
    so a resumed fit continues the ramp. The epoch's last share is recorded in ``history`` as
    ``eps_scale``.

    Parameters
    ----------
    epochs : float, default=3
        Epochs to reach the whole budget (> 0; fractions allowed).
    start : float, default=0.0
        First share of the budget, in [0, 1].

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> from robustkd.callbacks import EpsilonWarmup
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="pgd", eps=0.2, max_epochs=4,
    ...                          batch_size=128, train_split=None, verbose=0, callbacks=[EpsilonWarmup(epochs=2)])
    >>> [round(s, 2) for s in net.fit(X[:256], y[:256]).history[:, "eps_scale"]]  # 2 batches per epoch
    [0.25, 0.75, 1.0, 1.0]
    """

    _parameter_constraints = {"epochs": [POSITIVE], "start": [UNIT]}

    def __init__(self, epochs=3, start=0.0):
        self.epochs = epochs
        self.start = start

    def on_train_begin(self, net, **kwargs):
        if not hasattr(net, "eps_scale"):
            raise TypeError(f"EpsilonWarmup needs a net with a training attack (AdversarialTeacher, "
                            f"MultiTeacherDistiller); got {type(net).__name__}")

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            net.eps_scale_ = min(1.0, self.start + (1 - self.start) * self.next_batch() / self.epochs)

    def on_epoch_end(self, net, **kwargs):
        if hasattr(net, "eps_scale_"):
            net.history.record("eps_scale", net.eps_scale_)

    def on_train_end(self, net, **kwargs):
        net.__dict__.pop("eps_scale_", None)     # after the fit the net is what it always is: the whole budget


class WeightAveraging(_CheckedCallback):
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

    _parameter_constraints = {"decay": [Interval(0, 1, closed="neither")]}

    def __init__(self, decay=0.999):
        self.decay = decay

    def initialize(self):
        self.n_updates_, self.average_, self.trained_ = 0, None, None
        return super().initialize()

    def on_train_begin(self, net, **kwargs):
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
