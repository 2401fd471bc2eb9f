"""MTKD-AR: a student distilled on clean data from several adversarially trained teachers."""
import numpy as np
import torch
from sklearn.base import clone
from skorch import NeuralNetClassifier

from .._base import SeededNetMixin, net_defaults
from .._validation import NONNEGATIVE, POSITIVE, UNIT, Interval, Options, as_array
from ..callbacks import TeacherWeights
from ..losses import KD_FORMS, distillation_loss
from ..training import AdversarialTrainingMixin
from ..weighting import AdaptiveWeighter
from ._features import FeatureMatchingMixin
from ._signals import TeacherSignalsMixin
from ._teachers import FrozenTeachers, FrozenTeachersMixin, fresh_student, teacher_list

__all__ = ["MultiTeacherDistiller"]

STUDENT_INPUTS = ("clean", "adversarial", "mixed")


class MultiTeacherDistiller(FrozenTeachersMixin, FeatureMatchingMixin, TeacherSignalsMixin, SeededNetMixin,
                            AdversarialTrainingMixin, NeuralNetClassifier):
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
    feature_matching=10.0``), the best recipe measured on held-out full-size Fashion-MNIST images (see the
    documentation's results pages). **The paper's plain MTKD-AR** is one line:
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
        ``"entropy"``, ``"camkd"``, ``"robust_precision"``, ... see :mod:`robustkd.weighting`), an
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
    feature_matching : float, default=10.0
        Weight :math:`\\mu \\ge 0` of the feature term (beyond the paper; **0 is the paper's loss**): at each
        of ``feature_layers`` the student's features, mapped by one learned adapter per teacher (a 1x1
        convolution, or a linear map for vectors), are pulled towards that teacher's features on the same clean
        inputs,
        :func:`robustkd.losses.feature_matching_loss` with the distillation term's per-input weights, summed over
        the layers. The adapters train with the student and serve only the loss; the teachers run on every batch
        (their features are not cached). The batch's mean error per layer is recorded as ``feature_err``.
    feature_layers : "auto" or list of str, default="auto"
        Names of the layers (as in ``module.named_modules()``, the same in the student and every teacher) whose
        outputs are matched; ``"auto"``: every 2-d pooling layer (the outputs of a
        :class:`~robustkd.SmallCNN`'s two conv blocks).
    cache_teacher_outputs : bool, default=True
        Compute the teachers' logits on the training set once per fit (turn off when the
        dataset augments its inputs).
    student_inputs : {"clean", "adversarial", "mixed"}, default="clean"
        Beyond the paper: ``"adversarial"`` distils the teachers' clean outputs into the
        student's outputs on adversarial examples crafted against the student itself
        (ARD-style; the cross-entropy term stays on clean inputs); ``"mixed"`` averages the
        clean and adversarial distillation terms.
    student_attack, student_eps : str and float, default="pgd", 0.1
        The attack on the student that makes its adversarial inputs with ``student_inputs="adversarial"`` or
        ``"mixed"`` (unused with ``"clean"``), and its budget; the attack's own parameters are
        ``student_attack__*`` (e.g. ``student_attack__nb_iter=10``).
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
    feature_adapters_ : torch.nn.ModuleDict
        With ``feature_matching > 0``: per matched layer (its name with "/" for "."), one adapter per teacher;
        empty otherwise. ``feature_layers_`` holds the matched layers' names.

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
        "feature_matching": [NONNEGATIVE],
        "cache_teacher_outputs": [bool],
        "student_inputs": [Options(*STUDENT_INPUTS)],
        "student_attack": [str],
        "student_eps": [NONNEGATIVE],
        "clip_min": [Interval()],
        "clip_max": [Interval()],
    }

    def __init__(self, teachers, module=None, *, weighter="uniform", temperature=4.0, alpha=0.9,
                 kd="mixture", gradient_matching=2.0, gradient_weighter=None, feature_matching=10.0,
                 feature_layers="auto", cache_teacher_outputs=True, student_inputs="clean",
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
        self.student_inputs = student_inputs
        self.student_attack = student_attack
        self.student_eps = student_eps
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.random_state = random_state

    def __sklearn_clone__(self):
        # sklearn's clone would clone each fitted teacher into an unfitted one; teachers are
        # inputs, not hyper-parameters, so the clone shares them (fitting never modifies them).
        params = self.get_params(deep=False)
        teachers = params.pop("teachers")
        return type(self)(teachers=teachers, **{k: clone(v, safe=False) for k, v in params.items()})

    # ----------------------------------------------------------------- set-up
    def check_training_readiness(self):
        teacher_list(self.teachers)
        super().check_training_readiness()   # the parameters against their table, then skorch's checks
        if self.student_inputs != "clean":
            self.check_training_attack("an adversarial student (student_inputs != 'clean')")

    def training_attack(self):
        """``student_attack`` when the student sees adversarial inputs, None for a clean-data student."""
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

    def get_default_callbacks(self):
        """skorch's defaults plus :class:`~robustkd.callbacks.TeacherWeights`."""
        return list(super().get_default_callbacks()) + [("teacher_weights", TeacherWeights())]

    # ------------------------------------------------------------------- data
    def check_data(self, X, y=None):
        """As the teachers': non-index labels (e.g. strings) are encoded with the teachers' ``classes_``
        when the teachers were fitted on such labels, so student and teacher logits mean the same class."""
        super().check_data(X, y)
        if getattr(self, "encodes_labels_", False):
            fitted = [t for t in teacher_list(self.teachers) if getattr(t, "encodes_labels_", False)]
            if fitted:
                self.classes_inferred_ = np.asarray(fitted[0].classes_)
                unknown = sorted(set(np.unique(as_array(y)).tolist()) - set(self.classes_inferred_.tolist()))
                if unknown:
                    raise ValueError(f"y holds labels {unknown[:10]} that the teachers were not fitted on; their "
                                     f"classes are {self.classes_inferred_[:10].tolist()}")

    def check_outputs(self, X, n_outputs):
        """The teachers take the inputs and agree with the student on the number of classes."""
        self.frozen_teachers_.check(X, self.module_)

    def infer(self, x, **fit_params):
        if isinstance(x, dict) and "X" in x:
            x = x["X"]
        return super().infer(x, **fit_params)

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
        weights = self.batch_weights(X, y_true, teacher_logits)
        student = [y_pred]
        if training and self.student_inputs != "clean":
            x = torch.as_tensor(X["X"] if isinstance(X, dict) else X, device=self.device)
            adv_pred = self.infer(self.adversarial_examples(x, y_true))
            student = [adv_pred] if self.student_inputs == "adversarial" else [y_pred, adv_pred]
        loss = distillation_loss(y_pred, y_true, teacher_logits, weights, self.temperature, self.alpha, self.kd,
                                 criterion=self.criterion_, kd_student_logits=student)
        if self.gradient_matching and X is not None:   # the term needs the inputs
            loss = loss + self.gradient_matching * self.gradient_matching_term(y_pred, y_true, X, teacher_logits,
                                                                              weights, training)
        features = self.feature_matching_term(X, weights, training) if self.feature_matching else None
        if features is not None:
            loss = loss + self.feature_matching * features
        return loss

    def mean_teacher_weights(self):
        """Mean weight of each teacher over the training batches of each epoch, shape ``(n_epochs, K)``."""
        keys = [f"weight_t{k}" for k in range(len(self.teachers_))]
        return np.array([[row.get(key, np.nan) for key in keys] for row in self.history])
