"""Names of the built-in attacks and weighting schemes, and the check of a new registry name, without
importing torch.

The command line reads them for its help and its argument checks, which must be instant;
``tests/test_cli.py`` checks they match the registries in :mod:`robustkd.attacks` and
:mod:`robustkd.weighting`.
"""

ATTACKS = ("fgsm", "pgd", "pgd_l2", "bim", "mim", "cw", "cw_linf", "spsa", "apgd_ce", "apgd_dlr", "apgd_t",
           "apgd_ce_l2", "apgd_dlr_l2", "apgd_t_l2", "apgd", "apgd_l2", "square", "square_l2", "fab_t", "autoattack",
           "fgsm_rs", "nfgsm", "pgd_kl")
TRAINING_ONLY = ("nfgsm",)  # perturbations leave the eps-ball by design: never an evaluation attack
SCHEMES = ("uniform", "accuracy", "confidence", "loss", "entropy", "camkd", "robust_precision",
           "student_gap")


def check_new_name(registry, kind, name, overwrite):
    """Raise a ValueError unless ``name`` is a non-empty string free in ``registry`` (or ``overwrite``)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got name={name!r}")
    if name in registry and not overwrite:
        raise ValueError(f"{kind} named {name!r} is already registered; pass overwrite=True to replace it")
