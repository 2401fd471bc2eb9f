"""Evaluating robustness: per-sample masks, scores and scorers (:mod:`~robustkd.evaluation.robust`),
sanity checks of an evaluation (:mod:`~robustkd.evaluation.checks`), and reports with plots
(:mod:`~robustkd.evaluation.report`). ``robust`` depends on nothing else here; ``checks`` on
``robust``; ``report`` on both.
"""
from .checks import run_checks
from .report import plot_robustness_curves, robustness_report
from .robust import make_robust_scorer, robust_mask, robust_score

__all__ = ["robust_mask", "robust_score", "make_robust_scorer", "robustness_report", "plot_robustness_curves",
           "run_checks"]
