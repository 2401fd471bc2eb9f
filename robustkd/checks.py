"""Sanity checks of an evaluation: the public names of :mod:`robustkd.evaluation.checks`, kept here for
``from robustkd.checks import ...``.
"""
from .evaluation.checks import (check_attack_strength, check_deterministic, check_dlr, check_gradients,
                                check_large_eps, check_logits, check_monotone, check_spsa, check_square, run_checks)

__all__ = ["check_logits", "check_gradients", "check_deterministic", "check_large_eps", "check_monotone",
           "check_attack_strength", "check_spsa", "check_square", "check_dlr", "run_checks"]
