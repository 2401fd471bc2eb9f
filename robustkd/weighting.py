"""Per-input teacher weights: how much each teacher leads the student on each sample.

All schemes map teacher logits ``(n, K, C)`` (and labels ``(n,)``, for the schemes
that use them) to a non-negative ``(n, K)`` matrix whose rows sum to 1. With
:math:`p_{ik} = \\mathrm{softmax}(z_{ik})`, :math:`\\ell_{ik} = -\\log p_{ik}[y_i]` (the
teacher's cross-entropy on sample i) and :math:`H_{ik} = -\\sum_c p_{ik}[c] \\log p_{ik}[c]`:

================  =====================================================================  ============
scheme            weight :math:`w_{ik}`                                                   uses labels
================  =====================================================================  ============
uniform           :math:`1 / K` (the plain-ensemble baseline)                             no
accuracy          :math:`a_k / \\sum_j a_j`, :math:`a_k` the teacher's accuracy on the      yes
                  batch (the same for every sample; uniform if no teacher is right)
confidence        :math:`\\mathrm{softmax}_k(p_{ik}[y_i] / \\tau)`: the teacher's probability  yes
                  of the true class (MTKD-AR's adaptive weighting; default)
loss              :math:`\\mathrm{softmax}_k(-\\ell_{ik} / \\tau)`                              yes
entropy           :math:`\\mathrm{softmax}_k(-H_{ik} / \\tau)`: confident teachers lead       no
                  (entropy-based KD, Kwon et al., 2020)
camkd             :math:`(1 - \\mathrm{softmax}_k(\\ell_{ik})) / (K - 1)` (CA-MKD, Zhang     yes
                  et al., 2022); 1 when K = 1
robust_precision  :math:`\\mathrm{softmax}_k(\\tilde p_{ik}[y_i] / \\tau)`, with            yes
                  :math:`\\tilde p_{ik}` teacher k's probabilities at its own adversarial
                  example of x_i (PGD of its norm, ``n_steps`` steps, ``eps_scale``
                  times its training eps): a teacher robust around the input leads there
student_gap       :math:`\\mathrm{softmax}_k(-d_{ik} / \\tau)`, with                          no
                  :math:`d_{ik} = \\mathrm{KL}(p_{ik} \\,\\|\\, q_i)` and :math:`q_i` the
                  student's current probabilities on x_i: teachers the
                  student can follow lead (the weights change as it learns)
================  =====================================================================  ============

A callable ``f(teacher_logits, y) -> (n, K) tensor`` may be given instead of a name;
its rows are checked and normalised to sum to 1. New named schemes are added with
:func:`register_scheme` and then work everywhere a built-in one does.
"""
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from ._validation import POSITIVE, POSITIVE_INT, Options, check_value
from ._names import SCHEMES  # the built-in names, shared with the command line
from ._scheme_registry import _SCHEMES, SchemeSpec, available_schemes, register_scheme

__all__ = ["SCHEMES", "SchemeSpec", "register_scheme", "available_schemes", "teacher_weights", "true_class_log_prob", "AdaptiveWeighter"]


def true_class_log_prob(teacher_logits, y):
    """Each teacher's log-probability of the true class.

    Parameters
    ----------
    teacher_logits : Tensor of shape (n, K, C)
        The teachers' logits.
    y : Tensor of shape (n,), int64
        Class indices.

    Returns
    -------
    Tensor of shape (n, K)
        ``log softmax(teacher_logits)[i, k, y_i]``.
    """
    log_p = F.log_softmax(teacher_logits, dim=2)
    return log_p.gather(2, y.view(-1, 1, 1).expand(-1, teacher_logits.shape[1], 1)).squeeze(2)


def _uniform(z, y, tau):
    return torch.full(z.shape[:2], 1.0 / z.shape[1], device=z.device)


def _accuracy(z, y, tau):
    n, k = z.shape[:2]
    acc = (z.argmax(2) == y.unsqueeze(1)).float().mean(0)
    acc = acc / acc.sum() if acc.sum() > 0 else torch.full_like(acc, 1.0 / k)
    return acc.expand(n, k).clone()


def _confidence(z, y, tau):
    return F.softmax(true_class_log_prob(z, y).exp() / tau, dim=1)


def _loss(z, y, tau):
    return F.softmax(true_class_log_prob(z, y) / tau, dim=1)


def _entropy(z, y, tau):
    log_p = F.log_softmax(z, dim=2)
    return F.softmax((log_p.exp() * log_p).sum(2) / tau, dim=1)


def _student_gap(z, y, tau, student_logits):
    log_p = F.log_softmax(z, dim=2)
    log_q = F.log_softmax(student_logits.float(), dim=1).unsqueeze(1)
    kl = (log_p.exp() * (log_p - log_q)).sum(2)       # KL(teacher k || student) per sample, (n, K)
    return F.softmax(-kl / tau, dim=1)


def _camkd(z, y, tau):
    n, k = z.shape[:2]
    if k == 1:
        return torch.ones(n, 1, device=z.device)
    return (1 - F.softmax(-true_class_log_prob(z, y), dim=1)) / (k - 1)


for _name, _fn, _labels in (("uniform", _uniform, False), ("accuracy", _accuracy, True),
                            ("confidence", _confidence, True), ("loss", _loss, True),
                            ("entropy", _entropy, False), ("camkd", _camkd, True)):
    register_scheme(_name, _fn, needs_labels=_labels, per_sample=_name != "accuracy")
register_scheme("robust_precision", _confidence, needs_labels=True, adversarial=True,
                description="confidence in the true class at the teacher's own adversarial example")
register_scheme("student_gap", _student_gap, needs_labels=False, uses_student=True,
                description="closeness of the student's prediction to each teacher's (KL)")
if tuple(_SCHEMES) != SCHEMES:  # pragma: no cover - a guard for whoever edits either list
    raise ImportError(f"robustkd._names.SCHEMES {SCHEMES} does not match the built-in schemes {tuple(_SCHEMES)}")


def _check_rows(w, n, k, origin):
    """Normalise ``w`` to rows summing to 1 after checking its shape and values."""
    w = torch.as_tensor(w, dtype=torch.float32)
    if w.shape != (n, k) or not torch.isfinite(w).all() or (w < 0).any() or (w.sum(1) <= 0).any():
        raise ValueError(f"{origin} must return finite non-negative weights of shape ({n}, {k}) with positive row "
                         f"sums; got shape {tuple(w.shape)}")
    return w / w.sum(1, keepdim=True)


def teacher_weights(teacher_logits, y=None, scheme="confidence", tau=1.0, student_logits=None):
    """Weight matrix for ``teacher_logits`` under ``scheme`` (see the module docstring).

    Parameters
    ----------
    teacher_logits : Tensor of shape (n, K, C)
        Logits of K teachers.
    y : Tensor of shape (n,), optional
        True class indices; required by the schemes that use labels (``accuracy``,
        ``confidence``, ``loss``, ``camkd`` and registered ones with ``needs_labels``).
    scheme : str or callable, default="confidence"
        A registered name (:func:`available_schemes`) or ``f(teacher_logits, y) -> (n, K)``.
    tau : float, default=1.0
        Softmax temperature of ``confidence``, ``loss``, ``entropy`` and ``student_gap``; lower is sharper.
    student_logits : Tensor of shape (n, C), optional
        The student's logits on the same inputs; required by the schemes that read them
        (``student_gap`` and registered ones with ``uses_student``).

    Returns
    -------
    Tensor of shape (n, K)
        Non-negative, rows summing to 1, no gradient.

    Examples
    --------
    >>> import torch
    >>> from robustkd.weighting import teacher_weights
    >>> logits = torch.tensor([[[4.0, 0.0], [0.0, 4.0]]])   # 1 sample, 2 teachers, 2 classes
    >>> teacher_weights(logits, torch.tensor([0]), "confidence", tau=0.1).round(decimals=3)
    tensor([[1., 0.]])
    >>> teacher_weights(logits, scheme="uniform")
    tensor([[0.5000, 0.5000]])
    """
    if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.dim() != 3:
        raise ValueError("teacher_logits must be a tensor of shape (n_samples, n_teachers, n_classes); got "
                         f"{getattr(teacher_logits, 'shape', type(teacher_logits).__name__)}")
    check_value(tau, "tau", [POSITIVE])
    n, k, _ = teacher_logits.shape
    with torch.no_grad():
        z = teacher_logits.detach().float()
        if callable(scheme):
            return _check_rows(scheme(z, y), n, k, "a weighting callable").to(z.device)
        if not isinstance(scheme, str) or scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {available_schemes()} or a callable; got scheme={scheme!r}")
        spec = _SCHEMES[scheme]
        if spec.needs_labels:
            if y is None:
                raise ValueError(f"scheme={scheme!r} needs the true labels y")
            y = torch.as_tensor(y, device=z.device).long()
            if y.shape != (n,):
                raise ValueError(f"y must have shape ({n},); got {tuple(y.shape)}")
        if spec.uses_student:
            if student_logits is None:
                raise ValueError(f"scheme={scheme!r} needs the student's logits (student_logits)")
            q = torch.as_tensor(student_logits, device=z.device).detach()
            if q.shape != (n, z.shape[2]):
                raise ValueError(f"student_logits must have shape ({n}, {z.shape[2]}); got {tuple(q.shape)}")
            w = spec.fn(z, y if spec.needs_labels else None, tau, q)
        else:
            w = spec.fn(z, y if spec.needs_labels else None, tau)
        if scheme in SCHEMES:
            return w
        return _check_rows(w, n, k, f"scheme {scheme!r}").to(z.device)


class AdaptiveWeighter(BaseEstimator):
    """Turns teacher logits (and labels) into per-sample teacher weights.

    A small scikit-learn-style object (``get_params``/``set_params``, clonable), so
    ``GridSearchCV(distiller, {"weighter__scheme": [...]})`` searches over schemes.
    The formulas are in :mod:`robustkd.weighting`.

    Parameters
    ----------
    scheme : str or callable, default="confidence"
        A registered name (``"uniform"``, ``"accuracy"``, ``"confidence"``, ``"loss"``,
        ``"entropy"``, ``"camkd"`` or one added with :func:`register_scheme`) or a callable.
    tau : float, default=1.0
        Softmax temperature for ``confidence``, ``loss``, ``entropy`` and ``robust_precision``.
    eps_scale : float, default=1.0
        ``robust_precision``: each teacher is attacked at this multiple of its own training budget.
    n_steps : int, default=5
        ``robust_precision``: steps of the PGD attack of each teacher's norm.
    threat_models : {"own", "union"}, default="own"
        ``robust_precision``: ``"own"`` attacks each teacher within its own threat model (its training
        attack's norm and eps); ``"union"`` attacks every teacher within *every* threat model of the pool
        (each at ``eps_scale`` times its budget) and reads its probabilities at the adversarial example
        where its true-class probability is lowest, so a teacher leads where it is robust in all the
        pool's norms at once, as the union threat model scores a student. With a pool of one threat
        model the two are the same.

    References
    ----------
    .. [1] Munir, Ullah and Zaidi (2025). Improving Adversarial Robustness Through Adaptive
       Learning-Driven Multi-Teacher Knowledge Distillation. arXiv:2507.20996.
    .. [2] Kwon et al. (2020). Adaptive knowledge distillation based on entropy. ICASSP.
    .. [3] Zhang, Chen and Wang (2022). Confidence-aware multi-teacher knowledge distillation. ICASSP.

    Examples
    --------
    >>> import torch
    >>> from robustkd import AdaptiveWeighter
    >>> w = AdaptiveWeighter(scheme="loss", tau=0.5)(torch.randn(5, 3, 10), torch.randint(0, 10, (5,)))
    >>> w.shape, bool(torch.allclose(w.sum(1), torch.ones(5)))
    (torch.Size([5, 3]), True)
    """


    _parameter_constraints = {
        "scheme": [str, callable],
        "tau": [POSITIVE],
        "eps_scale": [POSITIVE],
        "n_steps": [POSITIVE_INT],
        "threat_models": [Options("own", "union")],
    }

    def __init__(self, scheme="confidence", tau=1.0, eps_scale=1.0, n_steps=5, threat_models="own"):
        self.scheme = scheme
        self.tau = tau
        self.eps_scale = eps_scale
        self.n_steps = n_steps
        self.threat_models = threat_models

    def fit(self, X=None, y=None):
        """Nothing to learn (the weights depend on each batch only); returns ``self``.

        Parameters
        ----------
        X, y : ignored
            Accepted so the weighter is a complete scikit-learn estimator.

        Returns
        -------
        self : AdaptiveWeighter
            This weighter.
        """
        return self

    def __call__(self, teacher_logits, y=None, student_logits=None):
        """Return the ``(n, K)`` weight matrix; see :func:`teacher_weights`."""
        return teacher_weights(teacher_logits, y, scheme=self.scheme, tau=self.tau, student_logits=student_logits)

    @property
    def per_sample(self):
        """Whether sample i's weights depend on sample i alone (never assumed of a callable)."""
        return not callable(self.scheme) and self.scheme in _SCHEMES and _SCHEMES[self.scheme].per_sample

    @property
    def adversarial(self):
        """Whether the scheme reads the teachers' logits on their own adversarial examples."""
        return not callable(self.scheme) and self.scheme in _SCHEMES and _SCHEMES[self.scheme].adversarial

    @property
    def uses_student(self):
        """Whether the scheme reads the student's logits (its weights then change during a fit)."""
        return not callable(self.scheme) and self.scheme in _SCHEMES and _SCHEMES[self.scheme].uses_student

    @property
    def needs_labels(self):
        """Whether the scheme uses the true labels."""
        return callable(self.scheme) or self.scheme not in _SCHEMES or _SCHEMES[self.scheme].needs_labels
