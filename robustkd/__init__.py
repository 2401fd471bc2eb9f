"""robustkd: adversarial robustness through adaptive multi-teacher knowledge distillation.

Implements MTKD-AR (Munir, Ullah and Zaidi, 2025, arXiv:2507.20996) behind a
scikit-learn estimator API built on skorch, with robust scoring over advertorch attacks.

The public names are imported on first use (PEP 562), so ``import robustkd`` and the
command line's ``--help`` do not pay for importing torch.
"""
import importlib

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "AdversarialTeacher": "teachers",
    "TeacherPool": "teachers",
    "RobustAccuracy": "callbacks",
    "RobustEarlyStopping": "callbacks",
    "OneCycleLR": "callbacks",
    "WeightAveraging": "callbacks",
    "EpochLog": "callbacks",
    "MultiTeacherDistiller": "distiller",
    "AdaptiveWeighter": "weighting",
    "available_attacks": "attacks",
    "get_attack": "attacks",
    "register_attack": "attacks",
    "register_scheme": "weighting",
    "register_dataset": "datasets",
    "load_digits_images": "datasets",
    "load_fashion_mnist": "datasets",
    "load_mnist": "datasets",
    "load_split": "datasets",
    "SmallCNN": "models",
    "make_robust_scorer": "scoring",
    "plot_robustness_curves": "scoring",
    "robust_mask": "scoring",
    "robust_score": "scoring",
    "robustness_report": "scoring",
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
