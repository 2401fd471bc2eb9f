"""The MTKD-AR experiment end to end: baselines, teachers, students, evaluation, files.

:func:`reproduce` trains, on one split, a standard model, one adversarially trained
teacher per attack, a single-teacher student per teacher, a uniform-weight
multi-teacher student (ensemble baseline), the adaptive MTKD-AR student and
(optionally) the adversarial-student variant; it scores each on clean data and under
each evaluation attack at each eps, and writes ``results.json``, ``results.csv`` and
PNG plots. Fitted models are saved under ``out/models`` with a key derived from every
setting that affects them, so a second run with the same settings reuses them.
"""
import csv
import dataclasses
import hashlib
import json
import logging
import os
import time

import joblib

logger = logging.getLogger(__name__)

__all__ = ["ExperimentConfig", "reproduce", "METHOD_ORDER"]

METHOD_ORDER = ("standard", "teacher", "kd", "mtkd_uniform", "mtkd_adaptive", "mtkd_adversarial")


@dataclasses.dataclass
class ExperimentConfig:
    """Settings of :func:`reproduce`; every field is a command-line option of ``robustkd reproduce``.

    Parameters
    ----------
    dataset : {"digits", "mnist", "fashion-mnist"}, default="digits"
        Data set; digits is split 75/25, the others use their own test sets.
    data_home : str, optional
        Folder holding ``MNIST/raw`` or ``FashionMNIST/raw``.
    download : bool, default=False
        Download MNIST/Fashion-MNIST when missing.
    out : str, default="robustkd_out"
        Output folder; fitted models go to ``out/models`` and are reused.
    epochs : int, default=15
        Epochs for every model.
    attacks : tuple of str, default=("fgsm", "pgd", "mim")
        One adversarially trained teacher per attack.
    train_eps : float, default=0.2
        Budget of the teachers' (and the adversarial student's) training attacks.
    eval_attacks : tuple of str, default=("fgsm", "pgd", "bim", "mim", "cw_linf")
        Attacks of the evaluation.
    eps : tuple of float, default=(0.05, 0.1, 0.2, 0.3)
        Evaluation budgets.
    scheme : str, default="confidence"
        Weighting scheme of the adaptive student.
    temperature : float, default=4.0
        Distillation temperature.
    alpha : float, default=0.9
        Share of the distillation term.
    adversarial_student : bool, default=True
        Also train the ARD-style student.
    n_train, n_test : int, optional
        Subsample the training and test sets.
    batch_size : int, default=64
        Training batch size.
    n_jobs : int, optional
        Teachers trained in parallel.
    device : str, default="cpu"
        Torch device.
    seed : int, default=0
        Seeds the split, the models and the attacks.
    """

    dataset: str = "digits"
    data_home: str = None
    download: bool = False
    out: str = "robustkd_out"
    epochs: int = 15
    attacks: tuple = ("fgsm", "pgd", "mim")
    train_eps: float = 0.2
    eval_attacks: tuple = ("fgsm", "pgd", "bim", "mim", "cw_linf")
    eps: tuple = (0.05, 0.1, 0.2, 0.3)
    scheme: str = "confidence"
    temperature: float = 4.0
    alpha: float = 0.9
    adversarial_student: bool = True
    n_train: int = None
    n_test: int = None
    batch_size: int = 64
    n_jobs: int = None
    device: str = "cpu"
    seed: int = 0


def _key(**parts):
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_split(dataset, data_home=None, download=False, seed=0, n_train=None, n_test=None):
    """``(X_train, X_test, y_train, y_test)`` for a dataset name of the command line.

    Digits is split 75/25 (stratified, ``seed``); MNIST and Fashion-MNIST use their own test
    sets. ``n_train``/``n_test`` draw random subsets with ``seed``. Shared by
    ``robustkd evaluate`` and :func:`reproduce`.

    Parameters
    ----------
    dataset : {"digits", "mnist", "fashion-mnist"}
        Data set name.
    data_home : str, optional
        Folder holding ``MNIST/raw`` or ``FashionMNIST/raw``.
    download : bool, default=False
        Download MNIST/Fashion-MNIST when missing.
    seed : int, default=0
        Seeds the digits split and the subsets.
    n_train, n_test : int, optional
        Sizes of random subsets of the training and test sets.

    Returns
    -------
    tuple of ndarray
        ``(X_train, X_test, y_train, y_test)``.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from . import datasets

    if dataset == "digits":
        X, y = datasets.load_digits_images()
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    else:
        loader = datasets.load_mnist if dataset == "mnist" else datasets.load_fashion_mnist
        X_train, y_train = loader(data_home, train=True, download=download)
        X_test, y_test = loader(data_home, train=False, download=download)
    rng = np.random.RandomState(seed)
    if n_train and n_train < len(X_train):
        idx = rng.permutation(len(X_train))[:n_train]
        X_train, y_train = X_train[idx], y_train[idx]
    if n_test and n_test < len(X_test):
        idx = rng.permutation(len(X_test))[:n_test]
        X_test, y_test = X_test[idx], y_test[idx]
    return X_train, X_test, y_train, y_test


def _fit_or_load(path, make, X, y, log):
    if os.path.exists(path):
        log(f"reusing {os.path.basename(path)}")
        return joblib.load(path), 0.0, True
    start = time.perf_counter()
    model = make().fit(X, y)
    seconds = time.perf_counter() - start
    tmp = path + ".tmp"
    joblib.dump(model, tmp)
    os.replace(tmp, path)  # a killed run never leaves a half-written model behind
    return model, seconds, False


def reproduce(cfg, progress=None):
    """Run the experiment described by ``cfg`` and write its files under ``cfg.out``.

    Parameters
    ----------
    cfg : ExperimentConfig
    progress : callable, optional
        Called with a one-line message before each step (the command line passes a
        tqdm-aware printer); nothing is printed otherwise.

    Returns
    -------
    dict
        ``{"config", "split", "methods", "results", "teacher_weights", "timings"}``, as written
        to ``results.json``; ``results`` holds one record per method, attack and eps.
    """
    import numpy as np

    from .distiller import MultiTeacherDistiller
    from .models import SmallCNN
    from .scoring import robustness_report
    from .teachers import AdversarialTeacher, TeacherPool

    log = progress or logger.info
    os.makedirs(os.path.join(cfg.out, "models"), exist_ok=True)
    X_train, X_test, y_train, y_test = load_split(cfg.dataset, cfg.data_home, cfg.download, cfg.seed,
                                                  cfg.n_train, cfg.n_test)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    common = dict(module__input_shape=tuple(X_train.shape[1:]), module__n_classes=n_classes,
                  max_epochs=cfg.epochs, batch_size=cfg.batch_size, train_split=None, verbose=0, device=cfg.device)
    data_key = dict(dataset=cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                    epochs=cfg.epochs, batch_size=cfg.batch_size, n=len(X_train))
    models, timings, reused = {}, {}, {}

    def path(name, **extra):
        return os.path.join(cfg.out, "models", f"{name}-{_key(**data_key, **extra)}.joblib")

    def fit(name, make, **extra):
        log(f"training {name}")
        models[name], timings[name], reused[name] = _fit_or_load(path(name, **extra), make, X_train, y_train, log)
        return models[name]

    fit("standard", lambda: AdversarialTeacher(SmallCNN, attack=None, random_state=cfg.seed, **common))
    teacher_key = dict(attacks=list(cfg.attacks), train_eps=cfg.train_eps)
    pool_path = path("teachers", **teacher_key)
    log(f"training {len(cfg.attacks)} teachers ({', '.join(cfg.attacks)})")
    template = AdversarialTeacher(SmallCNN, eps=cfg.train_eps, **common)
    pool, seconds, was_reused = _fit_or_load(pool_path, lambda: TeacherPool(
        template, attacks=list(cfg.attacks), n_jobs=cfg.n_jobs, random_state=cfg.seed), X_train, y_train, log)
    for teacher in pool.teachers_:
        models[f"teacher_{teacher.attack}"] = teacher
        timings[f"teacher_{teacher.attack}"] = seconds / len(pool.teachers_)
        reused[f"teacher_{teacher.attack}"] = was_reused

    student = dict(module__input_shape=common["module__input_shape"], module__n_classes=n_classes,
                   max_epochs=cfg.epochs, batch_size=cfg.batch_size, train_split=None, verbose=0,
                   device=cfg.device, temperature=cfg.temperature, alpha=cfg.alpha, random_state=cfg.seed)
    kd_key = dict(teacher_key, temperature=cfg.temperature, alpha=cfg.alpha)
    for teacher in pool.teachers_:
        fit(f"kd_{teacher.attack}", lambda t=teacher: MultiTeacherDistiller(
            [t], module=SmallCNN, weighter="uniform", **student), **kd_key, single=teacher.attack)
    fit("mtkd_uniform", lambda: MultiTeacherDistiller(pool, module=SmallCNN, weighter="uniform", **student),
        **kd_key)
    fit("mtkd_adaptive", lambda: MultiTeacherDistiller(pool, module=SmallCNN, weighter=cfg.scheme, **student),
        **kd_key, scheme=cfg.scheme)
    if cfg.adversarial_student:
        fit("mtkd_adversarial", lambda: MultiTeacherDistiller(
            pool, module=SmallCNN, weighter=cfg.scheme, student_inputs="adversarial", attack="pgd",
            eps=cfg.train_eps, **student), **kd_key, scheme=cfg.scheme, adversarial="pgd")

    results = []
    for name, model in models.items():
        log(f"evaluating {name}")
        start = time.perf_counter()
        rows = robustness_report(model, X_test, y_test, attacks=list(cfg.eval_attacks), eps=list(cfg.eps),
                                 random_state=cfg.seed, device=cfg.device)
        timings[f"eval_{name}"] = time.perf_counter() - start
        results.extend(dict(method=name, **row) for row in rows)

    weights = {name: np.asarray(m.mean_teacher_weights()).tolist() for name, m in models.items()
               if isinstance(m, MultiTeacherDistiller)}
    summary = {
        "config": dataclasses.asdict(cfg),
        "split": {"n_train": len(X_train), "n_test": len(X_test), "n_classes": n_classes},
        "methods": list(models),
        "reused": reused,
        "results": results,
        "teacher_weights": weights,
        "teacher_names": [t.attack for t in pool.teachers_],
        "timings": timings,
    }
    _write(cfg.out, summary)
    return summary


def _write(out, summary):
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "results.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "attack", "eps", "accuracy", "n_samples"])
        writer.writeheader()
        writer.writerows(summary["results"])
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    plot_results(summary, os.path.join(out, "accuracy_vs_eps.png"))
    plot_teacher_weights(summary, os.path.join(out, "teacher_weights.png"))


def plot_results(summary, path):
    """Accuracy against eps, one panel per attack (and the worst case), one line per method."""
    import matplotlib.pyplot as plt

    from .scoring import plot_robustness_curves

    attacks = list(dict.fromkeys(r["attack"] for r in summary["results"] if r["attack"] != "clean"))
    cols = 3
    rows = -(-len(attacks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, attack in zip(axes.flat, attacks):
        subset = [r for r in summary["results"] if r["attack"] in ("clean", attack)]
        plot_robustness_curves(subset, ax=ax, group_by="method")
        ax.set_title(attack)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    fig.suptitle(f"{summary['config']['dataset']}: accuracy under attack")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_teacher_weights(summary, path):
    """Mean weight of each teacher per epoch, one panel per multi-teacher student."""
    import matplotlib.pyplot as plt

    students = {k: v for k, v in summary["teacher_weights"].items() if len(v) and len(v[0]) > 1}
    if not students:
        return
    fig, axes = plt.subplots(1, len(students), figsize=(4.5 * len(students), 3.4), squeeze=False)
    for ax, (name, w) in zip(axes.flat, students.items()):
        for k, label in enumerate(summary["teacher_names"]):
            ax.plot(range(1, len(w) + 1), [row[k] for row in w], marker=".", label=f"teacher {label}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean weight")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
