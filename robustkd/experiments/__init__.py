"""The MTKD-AR experiment end to end: baselines, teachers, students, evaluation, files.

:func:`reproduce` trains, on one split, a standard model, one adversarially trained
teacher per attack, a single-teacher student per teacher, a uniform-weight
multi-teacher student (ensemble baseline), the adaptive MTKD-AR student and
(optionally) the adversarial-student variant; it scores each on clean data and under
each evaluation attack at each eps, and writes ``results.json``, ``results.csv`` and
PNG plots. Fitted models are saved under ``out/models`` with a key derived from every
setting that affects them, so a second run with the same settings reuses them; each model's
evaluation is saved under ``out/evaluations`` too, so a run interrupted during a long
evaluation resumes with the next model. Settings left unset come from the data set's
protocol (:data:`PROTOCOLS`): Fashion-MNIST's is the full-size one.
"""
from .config import PROTOCOLS, ExperimentConfig
from .plots import plot_results, plot_teacher_weights, plot_tradeoff
from .runner import reproduce

__all__ = ["ExperimentConfig", "PROTOCOLS", "reproduce", "plot_tradeoff", "plot_results", "plot_teacher_weights"]
