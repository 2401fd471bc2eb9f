"""Adversarially trained teachers, alone or as a pool trained in parallel.

MTKD-AR (Munir, Ullah and Zaidi, 2025) starts from clones of one lightweight CNN,
each trained adversarially against a different attack, so each becomes robust in
its own way. :class:`AdversarialTeacher` is one such clone; :class:`TeacherPool`
fits one per attack with joblib.
"""
import numbers

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data

from ._base import SeededNetMixin, net_defaults
from ._rng import check_random_state_int
from .attacks import available_attacks, check_attack_name, check_eps, get_attack, perturb

__all__ = ["AdversarialTeacher", "TeacherPool"]


def check_training_attack(net, purpose):
    """Validate ``net.attack``, ``net.eps`` and its ``attack__*`` parameters before any training."""
    check_attack_name(net.attack)
    if check_eps(net.eps) <= 0:
        raise ValueError(f"eps must be > 0 for {purpose}; got eps={net.eps!r}")
    # builds the attack once on a stand-in model, so bad attack__ parameters fail before training
    get_attack(net.attack, torch.nn.Identity(), eps=net.eps, clip_min=net.clip_min, clip_max=net.clip_max,
               **net.get_params_for("attack"))


class AdversarialTeacher(SeededNetMixin, NeuralNetClassifier):
    """A skorch classifier trained on adversarial examples crafted on the fly.

    Each training batch has a fraction ``adv_ratio`` of its samples replaced by
    adversarial examples of ``attack`` at budget ``eps``, crafted against the
    current weights with the module in eval mode and its parameters frozen
    (:func:`robustkd.attacks.perturb`), so no attack gradient reaches the weight
    update. ``adv_ratio=1`` is Madry-style training (adversarial examples only);
    ``adv_ratio=0.5`` mixes clean and adversarial samples in every batch, in the
    spirit of Goodfellow et al. The caller's data is never modified.

    ``attack=None`` trains normally: the standard baseline with the same API.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        Must return **logits**, e.g. :class:`robustkd.models.SmallCNN`.
    attack : str or None, default="pgd"
        Registry name (see :func:`robustkd.attacks.available_attacks`).
    eps : float, default=0.1
        Attack budget, > 0.
    adv_ratio : float, default=1.0
        Fraction of each batch replaced by adversarial examples, in [0, 1].
    clip_min, clip_max : float, default=0.0, 1.0
        Valid input range; training data outside it is an error.
    random_state : int, optional
        Seeds initialisation, and each epoch's shuffling and attacks from ``(random_state, epoch)``
        (so a resumed fit continues exactly); the global RNG is restored after fit.
    criterion : torch criterion class, default=torch.nn.CrossEntropyLoss
        On logits. (skorch's default ``NLLLoss`` expects log-probabilities; a logits
        module trained with it stays at chance.)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    **kwargs
        Any :class:`skorch.NeuralNetClassifier` parameter (``max_epochs``,
        ``batch_size``, ``train_split``, ``device``, ``callbacks``, ``module__*``), and
        attack parameters as ``attack__<name>`` (e.g. ``attack__nb_iter=7``). Unlike
        skorch, training batches are shuffled by default (``iterator_train__shuffle=True``);
        ``device="auto"`` picks CUDA when it is available.

    Notes
    -----
    Labels may be integer class indices (used directly as logit indices) or any other
    labels (e.g. strings), which are encoded through ``classes_`` and returned by
    ``predict``. Ctrl-C (``KeyboardInterrupt``) during ``fit`` is not swallowed as in skorch:
    the finished epochs stay in ``history`` and the interrupt propagates.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network.

    References
    ----------
    .. [1] Munir, Ullah and Zaidi (2025). Improving Adversarial Robustness Through Adaptive
       Learning-Driven Multi-Teacher Knowledge Distillation. arXiv:2507.20996.
    .. [2] Madry et al. (2018). Towards Deep Learning Models Resistant to Adversarial Attacks. ICLR.

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> X, y = load_digits_images()
    >>> teacher = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm", eps=0.1,
    ...                              max_epochs=1, train_split=None, verbose=0, random_state=0)
    >>> teacher.fit(X[:200], y[:200]).predict(X[:3]).shape
    (3,)
    """

    prefixes_ = NeuralNetClassifier.prefixes_ + ["attack"]

    def __init__(self, module, *, attack="pgd", eps=0.1, adv_ratio=1.0, clip_min=0.0, clip_max=1.0,
                 random_state=None, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
                 **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, **net_defaults(kwargs))
        self.attack = attack
        self.eps = eps
        self.adv_ratio = adv_ratio
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.random_state = random_state

    def check_training_readiness(self):
        if self.attack is not None:
            check_training_attack(self, "adversarial training")
            if isinstance(self.adv_ratio, bool) or not isinstance(self.adv_ratio, numbers.Real) \
                    or not 0 <= self.adv_ratio <= 1:
                raise ValueError(f"adv_ratio must be a number in [0, 1]; got adv_ratio={self.adv_ratio!r}")
        super().check_training_readiness()

    def build_attack(self):
        """The attack on the current ``module_`` (None if ``attack`` is None)."""
        if self.attack is None:
            return None
        return get_attack(self.attack, self.module_, eps=self.eps, clip_min=self.clip_min, clip_max=self.clip_max,
                          **self.get_params_for("attack"))

    def adversarial_batch(self, Xi, yi):
        """Return the batch with its first ``round(adv_ratio * n)`` samples made adversarial.

        Training batches are shuffled by the data loader (``iterator_train__shuffle=True``, the
        default), so the first samples are a different random subset in every epoch.
        """
        n_adv = 0 if self.attack is None else int(round(self.adv_ratio * len(Xi)))
        if n_adv == 0:
            return Xi
        Xi = torch.as_tensor(Xi, device=self.device)
        yi = torch.as_tensor(yi, device=self.device)
        x_adv = perturb(self.build_attack(), Xi[:n_adv], yi[:n_adv])
        return torch.cat([x_adv, Xi[n_adv:]]) if n_adv < len(Xi) else x_adv

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        Xi = self.adversarial_batch(Xi, yi)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}


def _fit_one(teacher, X, y):
    return teacher.fit(X, y)


class TeacherPool(ClassifierMixin, BaseEstimator):
    """One adversarially trained clone of ``teacher`` per attack, fitted in parallel.

    A fitted pool is also the plain-ensemble baseline: ``predict_proba`` averages
    the teachers' probabilities.

    Parameters
    ----------
    teacher : AdversarialTeacher
        Template, cloned once per attack (its ``attack`` and ``random_state`` are set
        per clone; everything else is shared). Its ``attack__*`` parameters go to the
        attacks that take them: ``attack__nb_iter=5`` sets PGD's and MIM's steps and is
        left out of the FGSM teacher.
    attacks : sequence of str, default=("fgsm", "pgd", "mim")
        One teacher per attack name.
    n_jobs : int, optional
        Teachers fitted in parallel with joblib; respects ``joblib.parallel_config``,
        so a Dask or Ray backend runs them on a cluster unchanged.
    random_state : int, optional
        Each teacher gets its own seed drawn from it.
    verbose : int, default=0
        joblib's verbosity.

    Attributes
    ----------
    teachers_ : list of AdversarialTeacher
        Fitted teachers, in the order of ``attacks``.
    classes_ : ndarray

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, SmallCNN, TeacherPool, load_digits_images
    >>> X, y = load_digits_images()
    >>> template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), max_epochs=1,
    ...                               train_split=None, verbose=0)
    >>> pool = TeacherPool(template, attacks=["fgsm", "pgd"], random_state=0).fit(X[:100], y[:100])
    >>> [t.attack for t in pool.teachers_]
    ['fgsm', 'pgd']
    """

    def __init__(self, teacher, attacks=("fgsm", "pgd", "mim"), *, n_jobs=None, random_state=None, verbose=0):
        self.teacher = teacher
        self.attacks = attacks
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Fit one clone of ``teacher`` per attack.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs in the attacks' clip range.
        y : array-like of shape (n_samples,)
            Class indices.

        Returns
        -------
        self : TeacherPool
            The fitted pool.
        """
        if not isinstance(self.teacher, AdversarialTeacher):
            raise TypeError(f"teacher must be an AdversarialTeacher; got {type(self.teacher).__name__}")
        attacks = [self.attacks] if isinstance(self.attacks, str) else list(self.attacks)
        if not attacks:
            raise ValueError("attacks must name at least one attack; got an empty list")
        for a in attacks:
            check_attack_name(a, name="attack in attacks")
        seeds = check_random_state_int(self.random_state, len(attacks))
        clones = [self._clone_for(a, s) for a, s in zip(attacks, seeds)]
        self.teachers_ = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
            delayed(_fit_one)(t, X, y) for t in clones)
        self.classes_ = self.teachers_[0].classes_
        return self

    def _clone_for(self, attack, seed):
        accepts = available_attacks()[attack]["accepts"]
        params = {k: clone(v, safe=False) for k, v in self.teacher.get_params(deep=False).items()
                  if not k.startswith("attack__") or k[len("attack__"):] in accepts}
        params.update(attack=attack, random_state=seed)
        return type(self.teacher)(**params)

    def predict_proba(self, X):
        """Mean of the teachers' class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Averaged probabilities.
        """
        check_is_fitted(self, "teachers_")
        return np.mean([t.predict_proba(X) for t in self.teachers_], axis=0)

    def predict(self, X):
        """Class with the highest mean probability (a logit index, or the label when the teachers were
        fitted on non-index labels such as strings).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted classes.
        """
        indices = self.predict_proba(X).argmax(axis=1)
        return np.asarray(self.classes_)[indices] if getattr(self.teachers_[0], "encodes_labels_", False) else indices
