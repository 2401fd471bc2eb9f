"""robustkd: adversarial robustness through adaptive multi-teacher knowledge distillation.

Implements MTKD-AR (Munir, Ullah and Zaidi, 2025, arXiv:2507.20996) behind a
scikit-learn estimator API built on skorch, with robust scoring over advertorch attacks.
"""
from .attacks import available_attacks, get_attack
from .callbacks import RobustAccuracy
from .distiller import MultiTeacherDistiller
from .datasets import load_digits_images, load_fashion_mnist, load_mnist
from .models import SmallCNN
from .scoring import make_robust_scorer, plot_robustness_curves, robust_mask, robust_score, robustness_report
from .teachers import AdversarialTeacher, TeacherPool
from .weighting import AdaptiveWeighter

__version__ = "0.1.0.dev0"

__all__ = [
    "AdversarialTeacher",
    "TeacherPool",
    "RobustAccuracy",
    "MultiTeacherDistiller",
    "AdaptiveWeighter",
    "available_attacks",
    "get_attack",
    "load_digits_images",
    "load_fashion_mnist",
    "load_mnist",
    "SmallCNN",
    "make_robust_scorer",
    "plot_robustness_curves",
    "robust_mask",
    "robust_score",
    "robustness_report",
    "__version__",
]
