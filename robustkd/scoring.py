"""Robust scoring: the public names of :mod:`robustkd.evaluation`, kept here for ``from robustkd.scoring
import ...``. The code lives in :mod:`robustkd.evaluation.robust` and :mod:`robustkd.evaluation.report`.
"""
from .evaluation.report import plot_robustness_curves, robustness_report
from .evaluation.robust import make_robust_scorer, robust_mask, robust_score

__all__ = ["robust_mask", "robust_score", "make_robust_scorer", "robustness_report", "plot_robustness_curves"]
