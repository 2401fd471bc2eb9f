"""Each teacher's threat model, and its logits at its worst adversarial example within the pool's threat
models: what ``robust_precision`` weighting reads (:class:`~robustkd.AdaptiveWeighter`)."""
import numbers

import torch

from ..attacks import get_attack, perturb, sample_seeds
from ..callbacks import _training_norm   # a net's training-attack norm, as RobustEarlyStopping reads it
from ..weighting import _true_class_log_prob
from ._teachers import teacher_list

__all__ = ["threat_model", "check_threat_models", "threat_models_of", "worst_case_logits"]


def threat_model(teacher):
    """``(attack, eps)`` that measures a teacher's robustness in its own threat model: PGD of its training
    attack's norm (``"pgd"`` or ``"pgd_l2"``) at its training eps; None when it has no known training attack."""
    norm, eps = _training_norm(teacher), getattr(teacher, "eps", None)
    if norm is None or eps is None:
        return None
    return ("pgd_l2" if norm == "l2" else "pgd"), float(eps)


def check_threat_models(weighter):
    """Refuse a weighter whose ``threat_models`` is neither ``"own"`` nor ``"union"``."""
    value = getattr(weighter, "threat_models", "own")
    if not isinstance(value, str) or value not in ("own", "union"):
        raise ValueError(f"threat_models must be 'own' or 'union'; got weighter__threat_models={value!r}")


def threat_models_of(teachers, weighter):
    """Per teacher, ``(attack, eps)``: PGD of its training attack's norm at ``weighter.eps_scale`` times its
    training eps (checked, with ``n_steps`` and ``threat_models``)."""
    scale, steps = weighter.eps_scale, weighter.n_steps
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale < float("inf"):
        raise ValueError(f"eps_scale must be a finite number > 0; got weighter__eps_scale={scale!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1; got weighter__n_steps={steps!r}")
    check_threat_models(weighter)
    models = []
    for k, t in enumerate(teacher_list(teachers)):
        threat = threat_model(t)
        if threat is None:
            raise ValueError(f"weighting scheme {weighter.scheme!r} attacks each teacher within its own "
                             f"threat model, but teachers[{k}] ({type(t).__name__}) has none: use "
                             "AdversarialTeachers (their attack and eps)")
        models.append((threat[0], threat[1] * scale))
    return models


def worst_case_logits(teachers, own, weighter, x, y, index, seed, clip_min, clip_max):
    """``(n, K, C)``: teacher k's logits at its adversarial example of ``x`` in its own threat model
    ``own[k]`` or, with ``weighter.threat_models == "union"``, at the one of every distinct threat model of
    ``own`` where its true-class log-probability is lowest. ``index`` (the samples' rows, or None) seeds
    each sample's random start: salt k for the teacher's own threat model, ``k + K * (j + 1)`` for the j-th
    other one, so a union's attack in the own threat model is the one ``"own"`` runs."""
    union = list(dict.fromkeys(own)) if getattr(weighter, "threat_models", "own") == "union" else None
    logits = []
    for k, teacher in enumerate(teachers):
        worst, worst_p = None, None
        for j, (name, eps) in enumerate(union or [own[k]]):
            attack = get_attack(name, teacher, eps=eps, clip_min=clip_min, clip_max=clip_max,
                                nb_iter=weighter.n_steps)
            salt = k if (name, eps) == own[k] else k + len(own) * (j + 1)
            x_adv = perturb(attack, x, y, sample_seeds=None if index is None else sample_seeds(seed, index, salt))
            with torch.no_grad():
                z = teacher(x_adv)
            p = _true_class_log_prob(z.unsqueeze(1), y)[:, 0]   # log-prob of the true class
            if worst is None:
                worst, worst_p = z, p
            else:
                worst = torch.where((p < worst_p).view(-1, 1), z, worst)
                worst_p = torch.minimum(p, worst_p)
        logits.append(worst)
    return torch.stack(logits, dim=1)
