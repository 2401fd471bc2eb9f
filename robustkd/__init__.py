"""robustkd: adversarial robustness through adaptive multi-teacher knowledge distillation.

Implements MTKD-AR (Munir, Ullah and Zaidi, 2025, arXiv:2507.20996) behind a
scikit-learn estimator API built on skorch, with robust scoring over advertorch attacks.

Each public name has one home, a subpackage or module (:mod:`robustkd.training`, :mod:`robustkd.distillation`,
:mod:`robustkd.evaluation`, ...), and the names a user calls are also here, imported on first use (PEP 562), so
``import robustkd`` and the command line's ``--help`` do not pay for importing torch.
"""
import importlib

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "AdversarialTeacher": "training",
    "TeacherPool": "training",
    "MultiTeacherDistiller": "distillation",
    "AdaptiveWeighter": "weighting",
    "register_scheme": "weighting",
    "RobustAccuracy": "callbacks",
    "RobustEarlyStopping": "callbacks",
    "WeightAveraging": "callbacks",
    "SmallCNN": "models",
    "robust_score": "evaluation",
    "robust_mask": "evaluation",
    "make_robust_scorer": "evaluation",
    "robustness_report": "evaluation",
    "plot_robustness_curves": "evaluation",
    "available_attacks": "attacks",
    "get_attack": "attacks",
    "register_attack": "attacks",
    "load_digits_images": "datasets",
    "load_mnist": "datasets",
    "load_fashion_mnist": "datasets",
    "load_split": "datasets",
    "register_dataset": "datasets",
}

__all__ = list(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robustkd' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
