"""MTKD-AR: a student distilled on clean data from several adversarially trained teachers."""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring

from .._base import SeededNetMixin, net_defaults
from .._rng import check_seed
from .._validation import (NONNEGATIVE, POSITIVE, UNIT, Interval, Options, as_array, check_images, check_params,
                           is_index_labels, labeled_accuracy, unlabeled_mask)
from ..callbacks import TeacherWeights
from ..losses import KD_FORMS, distillation_loss, gradient_matching_loss, input_gradients
from ..training import AdversarialTrainingMixin
from ..weighting import AdaptiveWeighter
from ._features import FEATURE_MATCHING_ALLOWED, FeatureMatchingMixin
from ._threats import threat_models_of, worst_case_logits
from ._teachers import FrozenTeachers, TeacherOutputs, batch_inputs, fresh_student, teacher_list

__all__ = ["MultiTeacherDistiller"]

STUDENT_INPUTS = ("clean", "adversarial", "mixed", "rslad")
#: The attack of ``student_inputs="rslad"``: PGD on the KL divergence, here from the teachers' soft labels.
RSLAD_ATTACK = "pgd_kl"
#: ``norm_floor`` of the distiller's gradient term (:func:`robustkd.losses.gradient_matching_loss`).
GRADIENT_NORM_FLOOR = 0.1


class MultiTeacherDistiller(FeatureMatchingMixin, SeededNetMixin, AdversarialTrainingMixin, NeuralNetClassifier):
    """Distil several (adversarially trained) teachers into one student, weighting them per input.

    The student learns from the true labels and from the teachers' softened outputs:

    .. math::

        \\mathcal{L} = \\alpha\\, T^2\\, \\mathrm{KL}\\Big(\\sum_k w_{ik}\\, \\mathrm{softmax}(z_{ik}/T)
        \\,\\Big\\|\\, \\mathrm{softmax}(s_i/T)\\Big) + (1-\\alpha)\\, \\mathrm{CE}(s_i, y_i)

    where :math:`z_{ik}` are teacher k's logits, :math:`s_i` the student's and
    :math:`w_{ik}` the weights from ``weighter`` (see :mod:`robustkd.weighting`).
    ``kd="sum"`` uses the weighted sum of per-teacher KL terms instead; its gradient is the
    same (see :mod:`robustkd.losses`). With ``student_inputs="clean"`` (MTKD-AR, the
    default) the student never sees an adversarial example.

    **Input-gradient matching** (beyond the paper; ``gradient_matching`` = :math:`\\lambda > 0`) adds

    .. math::

        \\lambda\\, \\Big[1 - \\cos\\Big(\\nabla_x \\mathrm{CE}(s(x_i), y_i),\\ \\sum_k w_{ik}\\, g_{ik}\\Big)\\Big],
        \\qquad g_{ik} = \\frac{\\nabla_x \\mathrm{CE}(z_k(x_i), y_i)}{\\|\\nabla_x \\mathrm{CE}(z_k(x_i), y_i)\\|_2}

    averaged over the batch: the student's input gradient on the clean input is pulled towards the
    direction of the (robust) teachers', which transfers much of their robustness while the student
    still trains on clean data only (Chan et al., 2020; Srinivas and Fleuret, 2018). The teachers'
    gradients are computed once per fit with their logits (``cache_teacher_outputs``), as one
    weighted mixture per input when the weighting scheme is per-sample; the student's costs a
    double backpropagation (2.7x a plain epoch).

    **Feature matching** (beyond the paper; ``feature_matching`` = :math:`\\mu > 0`, on by default) adds, at each
    of ``feature_layers``, :math:`\\mu \\sum_k w_{ik} \\|A_k(f(x_i)) - f_k(x_i)\\|^2 / \\|f_k(x_i)\\|^2`: the
    student's features :math:`f`, through a learned 1x1 adapter :math:`A_k` per teacher, against teacher k's
    features :math:`f_k` on the same clean input.

    **The default** is equal teacher weights with both terms (``weighter="uniform", gradient_matching=2.0,
    feature_matching="auto"``: 10.0 on images at least 16 pixels a side, 0 on smaller ones), the best recipe
    measured on held-out training images of full-size Fashion-MNIST and of digits (see the documentation's
    results pages). **The paper's plain MTKD-AR** is one line:
    ``MultiTeacherDistiller(teachers, weighter="confidence", gradient_matching=0, feature_matching=0)``.

    Teachers are copied at fit time, frozen (eval mode, no gradients, kept in eval mode
    while skorch switches the student between train and eval), moved with the student to
    its device, and left out of the optimizer; the user's teacher objects are never
    modified. Their logits on the training set are computed once and reused every epoch
    (``cache_teacher_outputs=True``); turn that off when the dataset augments inputs.

    Parameters
    ----------
    teachers : list of fitted skorch nets / torch.nn.Module, or a fitted TeacherPool
        Teachers returning logits over the same classes.
    module : torch.nn.Module class or instance, optional
        The student. Default: a freshly initialised copy of the teachers' architecture
        (they must share one).
    weighter : str, AdaptiveWeighter class or instance, or callable, default="uniform"
        Per-input teacher weights: a scheme name (``"uniform"``, ``"confidence"`` (MTKD-AR's), ``"loss"``,
        ``"entropy"``, ``"camkd"``, ``"robust_precision"``, ``"student_gap"`` (weights that follow the student
        as it learns), ... see :mod:`robustkd.weighting`), an
        :class:`~robustkd.AdaptiveWeighter`, or a callable ``f(teacher_logits, y) -> (n, K)``. The scheme's
        parameters are ``weighter__*`` (``weighter__tau=0.1``); ``weighter__scheme`` overrides a name given here,
        so ``GridSearchCV`` can search over schemes.
    temperature : float, default=4.0
        Softmax temperature T of the distillation term.
    alpha : float, default=0.9
        Share of the distillation term, in [0, 1].
    kd : {"mixture", "sum"}, default="mixture"
        Form of the distillation term (same student gradient, see :mod:`robustkd.losses`).
    gradient_matching : float, default=2.0
        Weight :math:`\\lambda \\ge 0` of the input-gradient term
        (:func:`robustkd.losses.gradient_matching_loss`); **0 is the paper's plain MTKD-AR**. The batch's
        mean cosine is recorded in the history as ``grad_cos``.
    gradient_weighter : None, AdaptiveWeighter, str or callable, default=None
        Per-input teacher weights of the gradient term; None: the distillation term's (measured best: a
        student that matches one mixture of logits and another of gradients learns neither well).
    feature_matching : "auto" or float, default="auto"
        Weight :math:`\\mu \\ge 0` of the feature term (beyond the paper; **0 is the paper's loss**): at each
        of ``feature_layers`` the student's features, mapped by one learned adapter per teacher (a 1x1
        convolution, or a linear map for vectors), are pulled towards that teacher's features on the same clean
        inputs,
        :func:`robustkd.losses.feature_matching_loss` with the distillation term's per-input weights, summed over
        the layers. The adapters train with the student and serve only the loss; the teachers' features are
        computed once per fit (``cache_teacher_features``). The batch's mean error per layer is recorded as
        ``feature_err``. ``"auto"``: 10.0 for images at least 16 pixels high and wide, else 0 (the weight used
        is ``feature_matching_``): the term helped on held-out 28x28 Fashion-MNIST images and cost 1.7-4.2
        AutoAttack points against gradient matching alone on held-out 8x8 digits (two seeds).
    feature_layers : "auto", list of str or dict, default="auto"
        Which layers' outputs are matched (names as in ``module.named_modules()``). ``"auto"``: each 2-d pooling
        layer of the student (the end of a stage; a :class:`~robustkd.SmallCNN`'s two conv blocks) with the
        pooling layer of each teacher whose output has the same spatial size (its namesake if that has it, else
        the deepest such), so a student of another width or depth than the teachers is paired by role; student
        stages without a partner are left out with a warning. A list: layers of that name in the student and
        every teacher. A dict ``{student_layer: teacher_layer}``: explicit pairs. A pair whose outputs differ
        in spatial size is refused, naming both layers and their shapes; widths may differ (the adapters map
        them).
    cache_teacher_outputs : bool, default=True
        Compute the teachers' logits on the training set once per fit (turn off when the
        dataset augments its inputs).
    cache_teacher_features : bool, default=True
        With ``cache_teacher_outputs`` and ``feature_matching_ > 0``, also compute the teachers' features at the
        matched layers once per fit, kept in float16 (the teachers then never run during training; for a
        student much smaller than its teachers their forward passes were most of each step). Memory: 2 bytes
        per value, e.g. 3.4 GB for three :class:`~robustkd.SmallCNN` teachers on 60,000 28x28 images; turn it
        off where that does not fit, and the teachers run on every batch instead.
    student_inputs : {"clean", "adversarial", "mixed", "rslad"}, default="clean"
        Beyond the paper: ``"adversarial"`` distils the teachers' clean outputs into the
        student's outputs on adversarial examples crafted against the student itself
        (ARD-style; the cross-entropy term stays on clean inputs); ``"mixed"`` averages the
        clean and adversarial distillation terms. ``"rslad"`` (Zi et al., 2021) uses soft labels only: the
        student's adversarial examples maximise the KL divergence of its prediction from the teachers' clean
        soft labels (their weighted mixture at temperature 1; attack ``pgd_kl``, 10 steps of ``eps / 4`` by
        default), and the loss is ``alpha`` times the distillation term on them plus ``1 - alpha`` times the
        distillation term on the clean inputs, with no hard-label term (RSLAD's own form is
        ``alpha=5/6, temperature=1``).
    student_attack, student_eps : str and float, default="pgd", 0.1
        The attack on the student that makes its adversarial inputs with ``student_inputs="adversarial"`` or
        ``"mixed"`` (unused with ``"clean"``; with ``"rslad"`` the attack is ``pgd_kl``), and its budget; the
        attack's own parameters are ``student_attack__*`` (e.g. ``student_attack__nb_iter=10``).
    clip_min, clip_max : float, default=0.0, 1.0
        Valid input range.
    random_state : int, optional
        Seeds the student's initialisation, and each epoch's shuffling and attacks from
        ``(random_state, epoch)``; the global RNG is restored.
    criterion, optimizer, lr, **kwargs
        As for :class:`skorch.NeuralNetClassifier` (defaults: ``CrossEntropyLoss``, Adam, 1e-3).
        ``criterion`` is the hard-label term of the loss (with its ``criterion__*``
        parameters, e.g. ``criterion__label_smoothing=0.1``); the loss itself is
        :func:`robustkd.losses.distillation_loss`. Training batches are shuffled by default
        (``iterator_train__shuffle=True``, unlike skorch).
        skorch's default ``train_split`` holds out 20% of the training data for validation:
        any early stopping or checkpointing then uses training data only, never a test set.

    Attributes
    ----------
    module_ : torch.nn.Module
        The student.
    frozen_teachers_ : FrozenTeachers
        Frozen copies of the teachers (``teachers_`` is their ``ModuleList``).
    weighter_ : AdaptiveWeighter
        The weighter built from ``weighter`` and its ``weighter__*`` parameters.
    feature_matching_ : float
        The feature term's weight in the last fit: ``feature_matching``, with ``"auto"`` resolved for the
        training inputs' shape (:func:`~robustkd.distillation.resolve_feature_matching`).
    feature_adapters_ : torch.nn.ModuleDict
        With ``feature_matching_ > 0``: per matched layer (its name with "/" for "."), one adapter per teacher;
        empty otherwise. ``feature_layers_`` holds the matched student layers' names, ``feature_pairs_`` each one's
        partner layer in every teacher.

    References
    ----------
    .. [1] Munir, Ullah and Zaidi (2025). Improving Adversarial Robustness Through Adaptive
       Learning-Driven Multi-Teacher Knowledge Distillation. arXiv:2507.20996.
    .. [2] Hinton, Vinyals and Dean (2015). Distilling the Knowledge in a Neural Network.
    .. [3] Goldblum et al. (2020). Adversarially Robust Distillation. AAAI.
    .. [4] Chan, Tay and Ong (2020). What it thinks is important is important: robustness transfers through
       input gradients. CVPR. Srinivas and Fleuret (2018). Knowledge transfer with Jacobian matching. ICML.

    Examples
    --------
    >>> from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, load_digits_images
    >>> X, y = load_digits_images()
    >>> teachers = [AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack=a, max_epochs=1,
    ...                                train_split=None, verbose=0).fit(X[:200], y[:200]) for a in ("fgsm", "pgd")]
    >>> student = MultiTeacherDistiller(teachers, max_epochs=1, train_split=None, verbose=0).fit(X[:200], y[:200])
    >>> student.mean_teacher_weights().shape        # (epochs, teachers)
    (1, 2)
    """

    prefixes_ = NeuralNetClassifier.prefixes_ + ["student_attack", "weighter"]
    attack_param, eps_param = "student_attack", "student_eps"
    _parameter_constraints = {
        "weighter": [str, type, AdaptiveWeighter, callable],
        "temperature": [POSITIVE],
        "alpha": [UNIT],
        "kd": [Options(*KD_FORMS)],
        "gradient_matching": [NONNEGATIVE],
        "gradient_weighter": [None, str, AdaptiveWeighter, callable],
        "feature_matching": FEATURE_MATCHING_ALLOWED,
        "cache_teacher_outputs": [bool],
        "cache_teacher_features": [bool],
        "student_inputs": [Options(*STUDENT_INPUTS)],
        "student_attack": [str],
        "student_eps": [NONNEGATIVE],
        "clip_min": [Interval()],
        "clip_max": [Interval()],
    }

    def __init__(self, teachers, module=None, *, weighter="uniform", temperature=4.0, alpha=0.9,
                 kd="mixture", gradient_matching=2.0, gradient_weighter=None, feature_matching="auto",
                 feature_layers="auto", cache_teacher_outputs=True, cache_teacher_features=True,
                 student_inputs="clean",
                 student_attack="pgd", student_eps=0.1,
                 clip_min=0.0, clip_max=1.0, random_state=None, criterion=torch.nn.CrossEntropyLoss,
                 optimizer=torch.optim.Adam, lr=1e-3, **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr, **net_defaults(kwargs))
        self.teachers = teachers
        self.weighter = weighter
        self.temperature = temperature
        self.alpha = alpha
        self.kd = kd
        self.gradient_matching = gradient_matching
        self.gradient_weighter = gradient_weighter
        self.feature_matching = feature_matching
        self.feature_layers = feature_layers
        self.cache_teacher_outputs = cache_teacher_outputs
        self.cache_teacher_features = cache_teacher_features
        self.student_inputs = student_inputs
        self.student_attack = student_attack
        self.student_eps = student_eps
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.random_state = random_state

    # sklearn's clone would clone each fitted teacher into an unfitted one; teachers are inputs, not
    # hyper-parameters, so a clone shares them (fitting never modifies them)
    _shared_params = ("teachers",)

    # ----------------------------------------------------------------- set-up
    def check_training_readiness(self):
        teacher_list(self.teachers)
        super().check_training_readiness()   # the parameters against their table, then skorch's checks
        if self.student_inputs != "clean":
            self.check_training_attack("an adversarial student (student_inputs != 'clean')")

    def training_attack(self):
        """``student_attack`` when the student sees adversarial inputs (``pgd_kl`` for ``"rslad"``), None for a
        clean-data student."""
        if self.student_inputs == "rslad":
            return RSLAD_ATTACK
        return None if self.student_inputs == "clean" else self.student_attack

    def initialize(self):
        """Build the weighter (checking its scheme) and initialise the net."""
        self.weighter_ = self._build_weighter()
        self.gradient_weighter_ = self._build_gradient_weighter()
        return super().initialize()

    def initialize_module(self):
        teachers = teacher_list(self.teachers)
        frozen = FrozenTeachers(teachers)
        with self.seeded_rng(0):
            if self.module is None:
                if not frozen.shared_architecture():
                    raise ValueError("the teachers do not share one architecture, so no default student can be "
                                     "built; pass module=")
                self.module_ = fresh_student(teachers[0], frozen.teachers[0]).to(self.device)
            else:
                super().initialize_module()
        self.frozen_teachers_ = frozen.to(self.device)
        self._reset_feature_adapters()
        return self

    accepts_unlabeled = True

    def get_default_callbacks(self):
        """skorch's defaults (validation accuracy on the labeled samples only) plus
        :class:`~robustkd.callbacks.TeacherWeights`."""
        callbacks = [(name, EpochScoring(labeled_accuracy, name="valid_acc", lower_is_better=False, on_train=False))
                     if name == "valid_acc" else (name, cb) for name, cb in super().get_default_callbacks()]
        return callbacks + [("teacher_weights", TeacherWeights())]

    def filled_labels(self, y, teacher_logits):
        """``y`` as class indices, each unlabeled sample (-1) given the teachers' label: the class of their
        mean probabilities. These labels feed what needs a class on every sample (the weighting schemes
        that read labels, the teachers' and the student's input gradients, the student's attacks); the
        hard-label term sees the labeled samples only."""
        y = torch.as_tensor(y, device=teacher_logits.device).long()
        missing = y < 0
        if not missing.any():
            return y
        return torch.where(missing, F.softmax(teacher_logits.float(), dim=2).mean(1).argmax(1), y)

    def _hard_label_criterion(self, labeled):
        """``criterion_`` on the labeled samples of the batch, as a share of the batch (0 without any)."""
        if labeled.all():
            return self.criterion_

        def criterion(logits, y):
            if not labeled.any():
                return logits.sum() * 0.0
            return self.criterion_(logits[labeled], y[labeled]) * labeled.float().mean()
        return criterion

    # ------------------------------------------------------- frozen teachers
    @property
    def teachers_(self):
        """The frozen teacher modules (a ``ModuleList``)."""
        return self.frozen_teachers_.teachers

    def get_all_learnable_params(self):
        """Only the student's (and criterion's) parameters: the frozen teachers stay out of the optimizer."""
        frozen = {id(p) for p in self.frozen_teachers_.parameters()}
        for name, param in super().get_all_learnable_params():
            if id(param) not in frozen:
                yield name, param

    def __getstate__(self):
        # the frozen teachers are copies of self.teachers, which is pickled anyway: store them once
        frozen = self.__dict__.pop("frozen_teachers_", None)
        try:
            return super().__getstate__()
        finally:
            if frozen is not None:
                self.frozen_teachers_ = frozen

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "initialized_", False):
            self.frozen_teachers_ = FrozenTeachers(teacher_list(self.teachers)).to(self.device)

    # ------------------------------------------------------------------- data
    def check_data(self, X, y=None):
        """As the teachers': non-index labels (e.g. strings) are encoded with the teachers' ``classes_``
        when the teachers were fitted on such labels, so student and teacher logits mean the same class."""
        super().check_data(X, y)
        if y is None:
            return
        y = as_array(y)
        mask = unlabeled_mask(y) if np.ndim(y) == 1 else np.zeros(0, dtype=bool)
        fitted = [t for t in teacher_list(self.teachers) if getattr(t, "encodes_labels_", False)]
        if mask.size and mask.all():    # no label at all: the teachers fix the classes
            self.encodes_labels_ = bool(fitted)
            self.classes_inferred_ = (np.asarray(fitted[0].classes_) if fitted else
                                      np.arange(self.frozen_teachers_.check(check_images(X[:1]).to(self.device))
                                                .shape[2]))
        elif getattr(self, "encodes_labels_", False) and fitted:
            self.classes_inferred_ = np.asarray(fitted[0].classes_)
            labels = (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y))[~mask]
            unknown = sorted(set(labels.tolist()) - set(self.classes_inferred_.tolist()), key=str)
            if unknown:
                raise ValueError(f"y holds labels {unknown[:10]} that the teachers were not fitted on; their "
                                 f"classes are {self.classes_inferred_[:10].tolist()} (-1 marks an unlabeled "
                                 f"sample)")

    def check_outputs(self, X, n_outputs):
        """The teachers take the inputs and agree with the student on the number of classes."""
        self.frozen_teachers_.check(X, self.module_)

    def infer(self, x, **fit_params):
        if isinstance(x, dict) and "X" in x:
            x = x["X"]
        return super().infer(x, **fit_params)

    # ---------------------------------------------- the teachers' signals
    def get_split_datasets(self, X, y=None, **fit_params):
        """skorch's split of a dataset that carries the teachers' logits (and input gradients) on each sample.

        The logits are computed once here, after ``check_data`` (so bad inputs get the same errors
        as for a teacher). With ``gradient_matching > 0`` so are the teachers' unit-norm input
        gradients: stored as their weighted mixture per sample when the weighting scheme is
        per-sample (the weights then never change during the fit; one gradient per sample), else
        per teacher (K per sample). A scheme that reads the teachers' logits on their own adversarial
        examples (``robust_precision``) gets its weights computed here too, once per sample. With
        ``cache_teacher_outputs=False`` only the first batch is run, as a check, and the teachers run
        on every training batch instead.
        """
        dataset = self.get_dataset(X, y)
        logits, grads, weights, start = [], [], [], 0
        features = self._feature_cache()
        for Xb, yb in self.get_iterator(dataset, training=False):
            xb = torch.as_tensor(Xb, device=self.device)
            with (contextlib.nullcontext({}) if features is None else self.capturing_teacher_features()) as found:
                z = self.frozen_teachers_.check(xb)         # the same pass records the teachers' features
            if not logits:
                self._check_label_range(y, z.shape[2])
                for w in (self.weighter_, self.gradient_weighter_ if self.gradient_matching else None):
                    if w is not None and w.adversarial:
                        self._threat_models(w)          # fails early for teachers without one
            logits.append(z.cpu())
            if not self.cache_teacher_outputs:
                break
            index = torch.arange(start, start + len(xb))
            start += len(xb)
            yb = self.filled_labels(torch.as_tensor(yb, device=self.device), z)
            batch = {"X": xb, "index": index}
            if self.weighter_.adversarial:
                batch["teacher_weights"] = self.batch_weights(batch, yb, z)
                weights.append(batch["teacher_weights"].cpu())
            if self.gradient_matching:
                g = self.gradient_weighter_ or self.weighter_
                mix = g.per_sample and not getattr(g, "uses_student", False)   # fixed weights: store the mixture
                w = self.gradient_weights(batch, yb, z) if mix else None
                grads.append(self._teacher_gradients(xb, yb, z, mix=mix, weights=w).cpu())
            for key, value in found.items():
                features[key].append(value.to(torch.float16).cpu())
        dataset = TeacherOutputs(dataset, torch.cat(logits) if self.cache_teacher_outputs else None,
                                 torch.cat(grads) if grads else None, torch.cat(weights) if weights else None,
                                 {k: torch.cat(v) for k, v in features.items()} if features else None)
        if not self.train_split:
            return dataset, None
        return self.train_split(dataset, y, **fit_params) if y is not None else self.train_split(dataset, **fit_params)

    def _check_label_range(self, y, n_classes):
        y_idx = as_array(y)
        if y_idx is not None and is_index_labels(y_idx):  # other labels were checked in check_data
            y_idx = np.asarray(y_idx.cpu() if isinstance(y_idx, torch.Tensor) else y_idx)
            y_idx = y_idx[y_idx != -1]                      # unlabeled samples
            if y_idx.size and (y_idx.min() < 0 or y_idx.max() >= n_classes):
                raise ValueError(f"y holds labels outside the teachers' classes 0..{n_classes - 1} (-1 marks an "
                                 f"unlabeled sample): min {y_idx.min()}, max {y_idx.max()}")

    def batch_weights(self, X, y, teacher_logits=None, student_logits=None):
        """The per-input teacher weights ``(n, K)`` of the distillation term for a batch: cached ones when
        ``X`` is a training batch that carries them, else the weighter's on the teachers' logits (clean, or
        on each teacher's own adversarial examples for a scheme such as ``robust_precision``). A scheme
        that reads the student (``student_gap``) gets ``student_logits`` on the clean inputs, or the
        student's current ones when they are not given."""
        return self._weights_of(self.weighter_, "teacher_weights", X, y, teacher_logits, student_logits)

    def gradient_weights(self, X, y, teacher_logits=None, student_logits=None):
        """The per-input teacher weights ``(n, K)`` of the input-gradient term: ``gradient_weighter``'s, or
        the distillation term's (:meth:`batch_weights`) when it has none."""
        if self.gradient_weighter_ is None:
            return self.batch_weights(X, y, teacher_logits, student_logits)
        return self._weights_of(self.gradient_weighter_, "gradient_weights", X, y, teacher_logits, student_logits)

    def _weights_of(self, weighter, key, X, y, teacher_logits, student_logits=None):
        if isinstance(X, dict) and key in X:
            return torch.as_tensor(X[key], device=self.device)
        y = torch.as_tensor(y, device=self.device).long()
        if (y < 0).any():                           # unlabeled samples: the teachers' label
            teacher_logits = self.teacher_logits(X) if teacher_logits is None else teacher_logits
            y = self.filled_labels(y, teacher_logits)
        if weighter.adversarial:
            x = batch_inputs(X, self.device)
            index = X.get("index") if isinstance(X, dict) else None
            return weighter(self.teacher_adversarial_logits(x, y, index, weighter), y)
        z = self.teacher_logits(X) if teacher_logits is None else teacher_logits
        if not getattr(weighter, "uses_student", False):
            return weighter(z, y)
        if student_logits is None:
            with torch.no_grad():
                student_logits = self.infer(batch_inputs(X, self.device))
        return weighter(z, y, student_logits=student_logits.detach())

    def _threat_models(self, weighter=None):
        """Per teacher, the attack that measures its robust precision: PGD of its training attack's norm
        at the weighter's ``eps_scale`` times its training eps."""
        return threat_models_of(self.teachers, self.weighter_ if weighter is None else weighter)

    def teacher_adversarial_logits(self, x, y, index=None, weighter=None):
        """Each teacher's logits on its own adversarial examples of ``x`` (PGD of its norm, see
        :class:`~robustkd.AdaptiveWeighter`; ``weighter`` defaults to ``weighter_``), shape ``(n, K, C)``.
        With ``threat_models="union"``, each teacher is attacked in every threat model of the pool and its
        logits are those at the example where its true-class probability is lowest.

        With ``index`` (the samples' rows in the training data), sample i's random start comes from
        ``(random_state, i, k)`` alone (``k + K * (j + 1)`` for the j-th threat model of a union when it
        is not teacher k's own), so cached and per-batch weights are the same, and a union's attack in a
        teacher's own threat model is the one ``"own"`` runs.
        """
        weighter = self.weighter_ if weighter is None else weighter
        seed = check_seed(self.random_state)
        return worst_case_logits(self.teachers_, self._threat_models(weighter), weighter, x, y,
                                 None if index is None else np.asarray(index), 0 if seed is None else seed,
                                 self.clip_min, self.clip_max)

    def _build_weighter(self):
        w, params = self.weighter, self.get_params_for("weighter")
        if isinstance(w, type):
            w = w(**params)
        elif isinstance(w, AdaptiveWeighter):
            w = clone(w).set_params(**params)
        elif isinstance(w, str) or callable(w):
            w = AdaptiveWeighter(**{"scheme": w, **params})   # weighter__scheme wins over the name
        else:
            raise TypeError(f"weighter must be an AdaptiveWeighter, a scheme name or a callable; got weighter={w!r}")
        check_params(w, getattr(type(w), "_parameter_constraints", {}), prefix="weighter__")
        if not callable(w.scheme):  # validate the scheme's name up front; callables are checked on the first batch
            w(torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long),
              student_logits=torch.zeros(1, 2) if getattr(w, "uses_student", False) else None)
        return w

    def _build_gradient_weighter(self):
        """``gradient_weighter`` as an AdaptiveWeighter, or None for the distillation term's weights."""
        g = self.gradient_weighter
        if g is None:
            return None
        if isinstance(g, AdaptiveWeighter):
            g = clone(g)
        elif isinstance(g, str) or callable(g):
            g = AdaptiveWeighter(scheme=g)
        else:
            raise TypeError(f"gradient_weighter must be None, an AdaptiveWeighter, a scheme name or a callable; "
                            f"got {g!r}")
        check_params(g, getattr(type(g), "_parameter_constraints", {}), prefix="gradient_weighter.")
        return g

    def teacher_logits(self, X):
        """The frozen teachers' logits ``(n, K, C)`` for a batch: cached ones when ``X`` is a training
        batch that carries them, else computed on ``X`` (a tensor, or a batch dict ``{"X": ...}``)."""
        if isinstance(X, dict):
            if "teacher_logits" in X:
                return torch.as_tensor(X["teacher_logits"], device=self.device)
            X = X["X"]
        return self.frozen_teachers_(torch.as_tensor(X, device=self.device))

    def train_step_single(self, batch, **fit_params):
        """skorch's training step; with gradient matching, the clean inputs are made a leaf that requires
        grad first, so the student's forward pass serves both its logits and its input gradient."""
        if self.gradient_matching:
            Xi, yi = batch
            x = batch_inputs(Xi, self.device)
            x = x.detach().requires_grad_(True)
            batch = ({**Xi, "X": x} if isinstance(Xi, dict) else x), yi
        return super().train_step_single(batch, **fit_params)

    def _student_gradients(self, y_pred, x, y, training):
        """The student's input gradients of its cross-entropy at ``x``: through ``y_pred`` when it was
        computed from ``x`` (the training step), else from a new forward pass."""
        if training and x.requires_grad and y_pred.requires_grad:
            grad, = torch.autograd.grad(F.cross_entropy(y_pred, y, reduction="sum"), x, create_graph=True,
                                        allow_unused=True)
            if grad is not None:
                return grad
        return input_gradients(self.module_, x, y, normalize=False, create_graph=training)

    def _teacher_gradients(self, x, y, teacher_logits, mix, weights=None):
        """The teachers' unit-norm input gradients ``(n, K, *D)``, or with ``mix`` their weighted
        mixture ``(n, *D)`` under ``weights`` (default: the weighter's for ``teacher_logits``)."""
        grads = self.frozen_teachers_.input_gradients(x, y)
        if not mix:
            return grads
        w = self.gradient_weights(x, y, teacher_logits) if weights is None else weights
        return (w.view(*w.shape, *([1] * (grads.dim() - 2))) * grads).sum(1)

    def gradient_target(self, X, y):
        """The direction the student's input gradient is pulled towards on each input:
        ``sum_k w_ik g_ik``, the weighted mixture of the teachers' unit-norm input gradients.

        Parameters
        ----------
        X : Tensor of shape (n, ...) or batch dict
            Inputs, or a training batch ``{"X": ..., "teacher_grads": ...}`` that carries the
            cached gradients (these are then returned, mixed with the batch's weights if stored
            per teacher).
        y : array-like of shape (n,)
            Class indices (as the student is trained on them).

        Returns
        -------
        Tensor of shape (n, ...)
            The target gradient per input (not normalised).
        """
        self.check_is_fitted()
        y = torch.as_tensor(y, device=self.device).long()
        grads, weights = self._gradient_terms(X, y, self.teacher_logits(X))
        return (weights.view(*weights.shape, *([1] * (grads.dim() - 2))) * grads).sum(1)

    def _gradient_terms(self, X, y, teacher_logits, weights=None):
        """Teacher gradients ``(n, K', *D)`` and their weights ``(n, K')`` for the gradient term: the
        cached mixture with weight 1 (K' = 1), cached per-teacher gradients, or fresh ones."""
        cached = X.get("teacher_grads") if isinstance(X, dict) else None
        x = batch_inputs(X, self.device)
        if cached is not None and cached.dim() == x.dim():  # the weighted mixture, stored once per sample
            return torch.as_tensor(cached, device=self.device).unsqueeze(1), torch.ones(len(x), 1, device=self.device)
        if weights is None or self.gradient_weighter_ is not None:
            weights = self.gradient_weights(X, y, teacher_logits)
        if cached is None:
            return self._teacher_gradients(x, y, teacher_logits, mix=False), weights
        return torch.as_tensor(cached, device=self.device), weights

    def gradient_matching_term(self, y_pred, y_true, X, teacher_logits, weights, training=False):
        """:func:`robustkd.losses.gradient_matching_loss` of the student against the teachers on a batch.

        Parameters
        ----------
        y_pred : Tensor of shape (n, C)
            The student's logits on the clean inputs (in the training step, computed from them with
            their gradient, so no second forward pass is needed).
        y_true : Tensor of shape (n,), int64
            Class indices.
        X : Tensor of shape (n, ...) or batch dict
            The clean inputs, or a training batch carrying the cached teacher gradients.
        teacher_logits : Tensor of shape (n, K, C)
            The teachers' logits.
        weights : Tensor of shape (n, K)
            The per-input teacher weights.
        training : bool, default=False
            Keep the graph of the student's gradient (double backpropagation) and record the
            batch's mean cosine as ``grad_cos`` in the history.

        Returns
        -------
        Tensor (scalar)
            The term, in [0, 2], before its weight.
        """
        grads, grad_weights = self._gradient_terms(X, y_true, teacher_logits, weights)
        x = batch_inputs(X, self.device)
        matching = gradient_matching_loss(self._student_gradients(y_pred, x, y_true, training), grads, grad_weights,
                                          norm_floor=GRADIENT_NORM_FLOOR)
        if training:
            self.history.record_batch("grad_cos", 1.0 - float(matching.detach()))
        return matching

    # ------------------------------------------------------------------- loss
    def get_loss(self, y_pred, y_true, X=None, training=False, teacher_logits=None):
        """The distillation loss (see the class docstring) for a batch.

        ``teacher_logits`` (n, K, C) default to :meth:`teacher_logits` of ``X``. In training with
        ``student_inputs`` other than ``"clean"``, adversarial examples of the student are crafted
        from the clean inputs here and the distillation term uses the student's logits on them.
        With ``gradient_matching > 0`` the input-gradient term is added (on the clean inputs; the
        student's gradient keeps its graph in training, for double backpropagation).
        """
        y_true = torch.as_tensor(y_true, device=y_pred.device).long()
        if teacher_logits is None:
            teacher_logits = self.teacher_logits(X)
        labeled = y_true >= 0                        # -1: an unlabeled sample, never in the hard-label term
        y_true = self.filled_labels(y_true, teacher_logits)
        weights = self.batch_weights(X, y_true, teacher_logits, y_pred)
        student = [y_pred]
        if training and self.student_inputs == "rslad":
            x = batch_inputs(X, self.device)
            soft = (weights[..., None] * F.softmax(teacher_logits, dim=2)).sum(1)    # the teachers' soft labels
            adv_pred = self.infer(self.adversarial_examples(x, soft))
            loss = sum(share * distillation_loss(y_pred, y_true, teacher_logits, weights, self.temperature, 1.0,
                                                 self.kd, kd_student_logits=[logits])
                       for share, logits in ((self.alpha, adv_pred), (1 - self.alpha, y_pred)) if share)
        else:
            if training and self.student_inputs != "clean":
                x = batch_inputs(X, self.device)
                adv_pred = self.infer(self.adversarial_examples(x, y_true))
                student = [adv_pred] if self.student_inputs == "adversarial" else [y_pred, adv_pred]
            loss = distillation_loss(y_pred, y_true, teacher_logits, weights, self.temperature, self.alpha, self.kd,
                                     criterion=self._hard_label_criterion(labeled), kd_student_logits=student)
        if self.gradient_matching and X is not None:   # the term needs the inputs
            loss = loss + self.gradient_matching * self.gradient_matching_term(y_pred, y_true, X, teacher_logits,
                                                                              weights, training)
        features = self.feature_matching_term(X, weights, training) if self.feature_weight() else None
        if features is not None:
            loss = loss + self.feature_weight() * features
        return loss

    def mean_teacher_weights(self):
        """Mean weight of each teacher over the training batches of each epoch, shape ``(n_epochs, K)``."""
        keys = [f"weight_t{k}" for k in range(len(self.teachers_))]
        return np.array([[row.get(key, np.nan) for key in keys] for row in self.history])
