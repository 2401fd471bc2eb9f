"""Each teacher's logits at its worst adversarial example within the pool's threat models
(:func:`robustkd.threat_models.threat_model`): what
``robust_precision`` weighting reads (:class:`~robustkd.AdaptiveWeighter`)."""
import torch

from ..attacks import get_attack, perturb, sample_seeds
from ..threat_models import threat_model
from ..weighting import true_class_log_prob
from ._teachers import teacher_list

__all__ = ["threat_models_of", "worst_case_logits"]


def threat_models_of(teachers, weighter):
    """Per teacher, ``(attack, eps)``: PGD of its training attack's norm at ``weighter.eps_scale`` times its
    training eps."""
    scale = weighter.eps_scale
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
    union = list(dict.fromkeys(own)) if weighter.threat_models == "union" else None
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
            p = true_class_log_prob(z.unsqueeze(1), y)[:, 0]   # log-prob of the true class
            if worst is None:
                worst, worst_p = z, p
            else:
                worst = torch.where((p < worst_p).view(-1, 1), z, worst)
                worst_p = torch.minimum(p, worst_p)
        logits.append(worst)
    return torch.stack(logits, dim=1)
