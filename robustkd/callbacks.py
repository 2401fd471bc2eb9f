"""skorch callbacks that track robustness and progress while training."""
import logging
import time
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback

from .attacks import available_attacks, check_eps
from .exceptions import RobustKDWarning
from .training._averaging import WeightAveraging
from .training._schedule import OneCycleLR
from .evaluation.robust import robust_score

__all__ = ["RobustAccuracy", "RobustEarlyStopping", "OneCycleLR", "WeightAveraging", "EpochLog", "TeacherWeights"]

progress_logger = logging.getLogger("robustkd.progress")


class RobustAccuracy(Callback):
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
        Passed to :func:`robustkd.scoring.robust_score` (``nb_iter``, ``batch_size``, ...).
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

    def __init__(self, X, y, attack="pgd", eps=0.1, name="robust_acc", random_state=0, attack_params=None):
        self.X = X
        self.y = y
        self.attack = attack
        self.eps = eps
        self.name = name
        self.random_state = random_state
        self.attack_params = attack_params

    def initialize(self):
        check_eps(self.eps)
        if self.attack_params is not None and not isinstance(self.attack_params, dict):
            raise TypeError(f"attack_params must be a dict or None; got attack_params={self.attack_params!r}")
        return self

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


def _training_norm(net):
    """The norm of a net's training attack ("linf", "l2"), or None when it has none known to the registry."""
    name = net.training_attack() if hasattr(net, "training_attack") else getattr(net, "attack", None)
    spec = available_attacks().get(name) if isinstance(name, str) else None
    return spec["norm"] if spec else None


class RobustEarlyStopping(Callback):
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
        if self.eps is None and getattr(net, "eps", None) is None:
            raise ValueError("RobustEarlyStopping needs eps: pass eps=... or use it on a net with an eps")
        if self.eps is not None:
            check_eps(self.eps)
        if not 0 < self.collapse <= 1:
            raise ValueError(f"collapse must be in (0, 1]; got collapse={self.collapse!r}")
        self.best_, self.best_fgsm_, self.best_epoch_, self.best_state_, self.misses_ = -1.0, 0.0, None, None, 0

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if dataset_valid is None:
            raise ValueError("RobustEarlyStopping needs a validation split: set train_split, e.g. "
                             "skorch.dataset.ValidSplit(0.1) (data held out from training, never the test set)")
        X, y = _arrays(dataset_valid)
        X, y = X[:self.max_samples], np.asarray(y[:self.max_samples])
        eps = self.eps if self.eps is not None else net.eps
        l2 = self.eps is None and _training_norm(net) == "l2"   # eps is then an L2 radius
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


class EpochLog(Callback):
    """Log one line per finished epoch: model, epoch, training loss, seconds, and time left.

    Records go to the ``robustkd.progress`` logger at INFO level, so nothing is printed
    unless a handler is attached (``robustkd reproduce`` attaches one that writes above its
    progress bar). The time left for the model is the mean measured epoch time times the
    epochs still to run.

    Parameters
    ----------
    name : str, default="model"
        Label of the model in each line. ``{attack}`` is replaced by the net's training attack
        attribute, so a :class:`~robustkd.TeacherPool` template can name each teacher.

    Examples
    --------
    >>> import logging
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> from robustkd.callbacks import EpochLog
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack=None, max_epochs=2,
    ...                          train_split=None, verbose=0, callbacks=[EpochLog("standard")])
    >>> net.fit(X[:100], y[:100]).history[-1, "epoch"]
    2
    """

    def __init__(self, name="model"):
        self.name = name

    def on_train_begin(self, net, **kwargs):
        self.start_epoch_ = len(net.history)

    def on_epoch_begin(self, net, **kwargs):
        self.epoch_start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        seconds = time.perf_counter() - getattr(self, "epoch_start_", time.perf_counter())
        durations = [row.get("dur", seconds) for row in net.history[self.start_epoch_:-1]] + [seconds]
        left = max(net.max_epochs - epoch, 0) * sum(durations) / len(durations)
        loss = net.history[-1].get("train_loss", float("nan"))
        attack = net.training_attack() if callable(getattr(net, "training_attack", None)) else getattr(net, "attack", "")
        label = self.name.replace("{attack}", str(attack))
        progress_logger.info("%s epoch %d/%d loss %.4f %.1fs, about %s left for this model", label, epoch,
                             net.max_epochs, loss, seconds, format_seconds(left),
                             extra={"model": label, "epoch": epoch, "max_epochs": net.max_epochs,
                                    "seconds": seconds, "left": left})


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


def format_seconds(seconds):
    """``"1:02:03"``, ``"2:03"`` or ``"5s"`` for a duration in seconds."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"
