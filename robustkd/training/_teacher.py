"""An adversarially trained teacher: a skorch classifier trained on adversarial examples crafted on the fly.

MTKD-AR (Munir, Ullah and Zaidi, 2025) starts from clones of one lightweight CNN,
each trained adversarially against a different attack, so each becomes robust in
its own way. :class:`AdversarialTeacher` is one such clone; :class:`TeacherPool`
fits one per attack with joblib.
"""

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from .._base import SeededNetMixin, net_defaults
from .._validation import (NONNEGATIVE, UNIT, HasMethods, Interval, Options, as_array, check_value, labeled_subset,
                           unlabeled_mask)
from ..losses import OBJECTIVES, trades_loss
from ._adversarial import AdversarialTrainingMixin

__all__ = ["AdversarialTeacher"]


class AdversarialTeacher(SeededNetMixin, AdversarialTrainingMixin, NeuralNetClassifier):
    """A skorch classifier trained on adversarial examples crafted on the fly.

    Each training batch has a fraction ``adv_ratio`` of its samples replaced by
    adversarial examples of ``attack`` at budget ``eps``, crafted against the
    current weights with the module in eval mode and its parameters frozen
    (:func:`robustkd.attacks.perturb`), so no attack gradient reaches the weight
    update. ``adv_ratio=1`` is Madry-style training (adversarial examples only);
    ``adv_ratio=0.5`` mixes clean and adversarial samples in every batch, in the
    spirit of Goodfellow et al. The caller's data is never modified.

    ``attack=None`` trains normally: the standard baseline with the same API.

    ``objective="trades"`` trains with TRADES (Zhang et al., 2019) instead:
    ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` (:func:`robustkd.losses.trades_loss`), where ``x'``
    maximises the KL divergence from the clean prediction: TRADES as published is
    ``objective="trades", attack="pgd_kl"`` (another training attack, e.g. ``"fgsm_rs"``, gives a variant). TRADES trades a little clean accuracy for robustness through
    ``beta``, and costs one forward-backward pass more per example than Madry's objective.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        Must return **logits**, e.g. :class:`robustkd.models.SmallCNN`.
    attack : str or None, default="pgd"
        Registry name of the training attack (see :func:`robustkd.attacks.available_attacks`); None trains a
        standard model.
        The fast training attacks ``"fgsm_rs"`` and ``"nfgsm"`` cost one forward-backward pass per
        example against eleven for PGD-10.
    eps : float, default=0.1
        Attack budget, > 0.
    adv_ratio : float, default=1.0
        Fraction of each batch replaced by adversarial examples, in [0, 1] (``objective="madry"``;
        TRADES uses every sample clean and adversarial, so it needs 1).
    objective : {"madry", "trades"}, default="madry"
        ``"madry"``: cross-entropy on the adversarial batch (:func:`robustkd.losses.adversarial_loss`);
        ``"trades"``: :func:`robustkd.losses.trades_loss`.
    beta : float, default=6.0
        TRADES's weight of the robustness term (``objective="trades"`` only), >= 0.
    clip_min, clip_max : float, default=0.0, 1.0
        Valid input range; training data outside it is an error.
    random_state : int, optional
        Seeds initialisation, and each epoch's shuffling and attacks from ``(random_state, epoch)``
        (so a resumed fit continues exactly); the global RNG is restored after fit.
    pseudo_labeler : fitted classifier, optional
        What to do with unlabeled samples (``y == -1``, scikit-learn's convention): None leaves them out
        of the fit; a fitted classifier (anything with ``predict``, e.g. a standard net trained on the
        labeled samples) labels them with its predictions, once per fit, and the teacher trains on all of
        them: robust self-training (Carmon et al., 2019). Shared, not copied, by ``clone`` and
        :class:`~robustkd.TeacherPool`.
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
    .. [3] Zhang et al. (2019). Theoretically Principled Trade-off between Robustness and Accuracy. ICML.
    .. [4] Carmon et al. (2019). Unlabeled Data Improves Adversarial Robustness. NeurIPS.

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
    _parameter_constraints = {
        "attack": [str, None],
        "eps": [NONNEGATIVE],
        "adv_ratio": [UNIT],
        "objective": [Options(*OBJECTIVES)],
        "beta": [NONNEGATIVE],
        "clip_min": [Interval()],
        "clip_max": [Interval()],
        "pseudo_labeler": [None, HasMethods("predict")],
    }

    def __init__(self, module, *, attack="pgd", eps=0.1, adv_ratio=1.0, objective="madry", beta=6.0, clip_min=0.0,
                 clip_max=1.0, random_state=None, pseudo_labeler=None, criterion=torch.nn.CrossEntropyLoss,
                 optimizer=torch.optim.Adam, lr=1e-3, **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, **net_defaults(kwargs))
        self.attack = attack
        self.eps = eps
        self.adv_ratio = adv_ratio
        self.objective = objective
        self.beta = beta
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.random_state = random_state
        self.pseudo_labeler = pseudo_labeler

    _shared_params = ("pseudo_labeler",)    # a fitted model the teacher reads: shared, not cloned

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """skorch's ``partial_fit`` (``fit`` goes through it), after unlabeled samples (``y == -1``) are
        left out or pseudo-labelled (``pseudo_labeler``)."""
        X, y = self.labeled_data(X, y)
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def labeled_data(self, X, y):
        """``(X, y)`` as the teacher trains on them: without the unlabeled samples (``y == -1``), or with
        ``pseudo_labeler``'s labels for them."""
        mask = unlabeled_mask(y) if y is not None and np.ndim(as_array(y)) == 1 else None
        if mask is None or not mask.any():
            return X, y
        check_value(self.pseudo_labeler, "pseudo_labeler", self._parameter_constraints["pseudo_labeler"])
        X, y = as_array(X), as_array(y)
        if not isinstance(X, (np.ndarray, torch.Tensor)):
            raise TypeError(f"unlabeled samples (y == -1) need X as an array or tensor; got {type(X).__name__}")
        if self.pseudo_labeler is None:
            X, y, _ = labeled_subset(X, y, hint="pass pseudo_labeler=<a fitted classifier> to label them (robust "
                                                "self-training)")
            return X, y
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.array(y)
        index = torch.from_numpy(mask) if isinstance(X, torch.Tensor) else mask
        labels = np.asarray(self.pseudo_labeler.predict(X[index]))
        if labels.dtype.kind in "USO" and y.dtype.kind != "O":
            y = y.astype(object)
        y[mask] = labels
        return X, y

    def check_training_readiness(self):
        super().check_training_readiness()   # the parameters against their table, then skorch's checks
        if self.objective == "trades":
            if self.attack is None:
                raise ValueError("objective='trades' needs a training attack; got attack=None (TRADES's is "
                                 "attack='pgd_kl')")
            if self.adv_ratio != 1:
                raise ValueError(f"adv_ratio must be 1 with objective='trades' (every sample is used clean and "
                                 f"adversarial); got adv_ratio={self.adv_ratio!r}")
        if self.attack is not None:
            self.check_training_attack("adversarial training")

    def adversarial_batch(self, Xi, yi):
        """Return the batch with its first ``round(adv_ratio * n)`` samples made adversarial.

        Training batches are shuffled by the data loader (``iterator_train__shuffle=True``, the
        default), so the first samples are a different random subset in every epoch.
        """
        n_adv = 0 if self.attack is None else int(round(self.adv_ratio * len(Xi)))
        if n_adv == 0:
            return Xi
        Xi = torch.as_tensor(Xi, device=self.device)
        x_adv = self.adversarial_examples(Xi[:n_adv], torch.as_tensor(yi)[:n_adv])
        return torch.cat([x_adv, Xi[n_adv:]]) if n_adv < len(Xi) else x_adv

    def train_step_single(self, batch, **fit_params):
        """skorch's training step on the batch with its adversarial part (:meth:`adversarial_batch`), or the
        TRADES step (the attack runs in eval mode, both forward passes in training mode)."""
        Xi, yi = unpack_data(batch)
        if self.objective != "trades" or self.attack is None:
            return super().train_step_single((self.adversarial_batch(Xi, yi), yi), **fit_params)
        self.module_.train()
        x, y = to_tensor(Xi, device=self.device), to_tensor(yi, device=self.device)
        x_adv = self.adversarial_examples(x, y)
        logits_clean = self.infer(x, **fit_params)
        logits_adv = self.infer(x_adv, **fit_params)
        loss = trades_loss(logits_clean, logits_adv, y, beta=self.beta, criterion=self.criterion_)
        loss.backward()
        return {"loss": loss, "y_pred": logits_clean}
