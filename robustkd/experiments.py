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

from .datasets import DATASETS, load_split

logger = logging.getLogger(__name__)

__all__ = ["ExperimentConfig", "reproduce", "load_split"]


@dataclasses.dataclass
class ExperimentConfig:
    """Settings of :func:`reproduce`; every field is a command-line option of ``robustkd reproduce``.

    Parameters
    ----------
    dataset : str, default="digits"
        A name from :func:`robustkd.datasets.dataset_names` (``"digits"``, ``"mnist"``,
        ``"fashion-mnist"``): digits is split 75/25, the others use their own test sets.
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


MODEL_FORMAT = "robustkd-run-model-2"  # part of every model key: files from older versions are not reused


def _epochs_trained(model):
    """Finished epochs of a fitted net, or the fewest of a pool's teachers."""
    nets = getattr(model, "teachers_", None)
    if nets is not None and not hasattr(model, "module_"):
        return min(_epochs_trained(t) for t in nets)
    return sum(1 for row in model.history if "dur" in row)


def _fit_or_load(path, make, X, y, epochs, log):
    """Load a finished model from ``path``, or fit it and save it there with its fit time.

    A file is reused only if it holds a model that trained all ``epochs``; nothing is saved
    unless the fit finished (a ``KeyboardInterrupt`` propagates before the save). The file
    is written under a temporary name and renamed, so a killed run never leaves half a file.
    """
    if os.path.exists(path):
        saved = joblib.load(path)
        if isinstance(saved, dict) and saved.get("format") == MODEL_FORMAT and \
                _epochs_trained(saved["model"]) == epochs:
            log("reusing", os.path.basename(path))
            return saved["model"], saved["fit_seconds"], True
        logger.warning("%s is not a finished model of this run; training it again", path)
    start = time.perf_counter()
    model = make().fit(X, y)
    seconds = time.perf_counter() - start
    if _epochs_trained(model) != epochs:
        raise RuntimeError(f"{os.path.basename(path)} trained {_epochs_trained(model)} of {epochs} epochs; "
                           "not saving it as a finished model")
    tmp = path + ".tmp"
    joblib.dump({"format": MODEL_FORMAT, "model": model, "fit_seconds": seconds}, tmp)
    os.replace(tmp, path)
    return model, seconds, False


def reproduce(cfg, progress=None):
    """Run the experiment described by ``cfg`` and write its files under ``cfg.out``.

    Every model is saved under ``cfg.out/models`` when, and only when, its fit finished, with
    its fit time; a second run with the same settings reuses finished models and reports
    their recorded fit times. After an interruption (Ctrl-C), a re-run trains what was not
    finished and gives the same numbers as an uninterrupted run: each model is seeded on
    its own, so it does not matter which of them were reused.

    Parameters
    ----------
    cfg : ExperimentConfig
        The settings.
    progress : callable, optional
        ``progress(stage, name)`` with ``stage`` one of ``"training"``, ``"reusing"``,
        ``"evaluating"`` (a step starts) and ``"done"`` (it ended); the command line draws a
        progress bar from it. Per-epoch lines go to the ``robustkd.progress`` logger
        (:class:`~robustkd.callbacks.EpochLog`).

    Returns
    -------
    dict
        ``{"config", "split", "methods", "results", "teacher_weights", "timings"}``, as written
        to ``results.json``; ``results`` holds one record per method, attack and eps.
    """
    import numpy as np

    from .callbacks import EpochLog
    from .distiller import MultiTeacherDistiller
    from .models import SmallCNN
    from .scoring import robustness_report
    from .teachers import AdversarialTeacher, TeacherPool

    def log(stage, name):
        if progress is not None:
            progress(stage, name)
        else:
            logger.info("%s %s", stage, name)

    os.makedirs(os.path.join(cfg.out, "models"), exist_ok=True)
    X_train, X_test, y_train, y_test = load_split(cfg.dataset, cfg.data_home, cfg.download, cfg.seed,
                                                  cfg.n_train, cfg.n_test)
    n_classes = DATASETS[cfg.dataset].n_classes
    common = dict(module__input_shape=tuple(X_train.shape[1:]), module__n_classes=n_classes,
                  max_epochs=cfg.epochs, batch_size=cfg.batch_size, train_split=None, verbose=0, device=cfg.device)
    data_key = dict(dataset=cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                    epochs=cfg.epochs, batch_size=cfg.batch_size, n=len(X_train), format=MODEL_FORMAT)
    models, timings, reused = {}, {}, {}

    def path(name, **extra):
        return os.path.join(cfg.out, "models", f"{name}-{_key(**data_key, **extra)}.joblib")

    def fit(name, make, **extra):
        log("training", name)
        models[name], timings[name], reused[name] = _fit_or_load(path(name, **extra), make, X_train, y_train,
                                                                 cfg.epochs, lambda *a: log(*a))
        log("done", name)
        return models[name]

    fit("standard", lambda: AdversarialTeacher(SmallCNN, attack=None, random_state=cfg.seed,
                                               callbacks=[EpochLog("standard")], **common))
    teacher_key = dict(attacks=list(cfg.attacks), train_eps=cfg.train_eps)
    log("training", f"{len(cfg.attacks)} teachers ({', '.join(cfg.attacks)})")
    template = AdversarialTeacher(SmallCNN, eps=cfg.train_eps, callbacks=[EpochLog("teacher_{attack}")], **common)
    pool, _, was_reused = _fit_or_load(path("teachers", **teacher_key), lambda: TeacherPool(
        template, attacks=list(cfg.attacks), n_jobs=cfg.n_jobs, random_state=cfg.seed), X_train, y_train,
        cfg.epochs, lambda *a: log(*a))
    log("done", "teachers")
    for teacher in pool.teachers_:
        models[f"teacher_{teacher.attack}"] = teacher
        timings[f"teacher_{teacher.attack}"] = float(sum(teacher.history[:, "dur"]))
        reused[f"teacher_{teacher.attack}"] = was_reused

    student = dict(module__input_shape=common["module__input_shape"], module__n_classes=n_classes,
                   max_epochs=cfg.epochs, batch_size=cfg.batch_size, train_split=None, verbose=0,
                   device=cfg.device, temperature=cfg.temperature, alpha=cfg.alpha, random_state=cfg.seed)
    kd_key = dict(teacher_key, temperature=cfg.temperature, alpha=cfg.alpha)

    def distiller(name, teachers, **kwargs):
        return MultiTeacherDistiller(teachers, module=SmallCNN, callbacks=[EpochLog(name)], **kwargs, **student)

    for teacher in pool.teachers_:
        name = f"kd_{teacher.attack}"
        fit(name, lambda t=teacher, n=name: distiller(n, [t], weighter="uniform"), **kd_key, single=teacher.attack)
    fit("mtkd_uniform", lambda: distiller("mtkd_uniform", pool, weighter="uniform"), **kd_key)
    fit("mtkd_adaptive", lambda: distiller("mtkd_adaptive", pool, weighter=cfg.scheme), **kd_key, scheme=cfg.scheme)
    if cfg.adversarial_student:
        fit("mtkd_adversarial", lambda: distiller("mtkd_adversarial", pool, weighter=cfg.scheme,
                                                  student_inputs="adversarial", attack="pgd", eps=cfg.train_eps),
            **kd_key, scheme=cfg.scheme, adversarial="pgd")

    results = []
    for name, model in models.items():
        log("evaluating", name)
        start = time.perf_counter()
        rows = robustness_report(model, X_test, y_test, attacks=list(cfg.eval_attacks), eps=list(cfg.eps),
                                 random_state=cfg.seed, device=cfg.device)
        timings[f"eval_{name}"] = time.perf_counter() - start
        results.extend(dict(method=name, **row) for row in rows)
        log("done", f"evaluating {name}")

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


FAMILIES = (  # (prefix, label, colour map, line style)
    ("standard", "baseline", "Greys", ":"),
    ("teacher_", "teachers", "Blues", "-"),
    ("kd_", "single-teacher students", "Greens", "--"),
    ("mtkd_", "multi-teacher students", "Reds", "-."),
)


def _method_styles(methods):
    """Colour and line style per method: one colour family and one line style per method family."""
    import matplotlib.pyplot as plt

    styles = {}
    for prefix, _, cmap, line in FAMILIES:
        members = [m for m in methods if m.startswith(prefix)]
        for i, m in enumerate(members):
            styles[m] = dict(color=plt.get_cmap(cmap)(0.45 + 0.5 * (i + 1) / (len(members) + 1)), linestyle=line)
    return styles


def plot_results(summary, path):
    """Accuracy against eps, one panel per attack (and the worst case), one line per method.

    Method families (baseline, teachers, single-teacher students, multi-teacher students) have
    their own colour family and line style; one legend serves every panel.
    """
    import matplotlib.pyplot as plt

    results, methods = summary["results"], summary["methods"]
    attacks = list(dict.fromkeys(r["attack"] for r in results if r["attack"] != "clean"))
    styles = _method_styles(methods)
    cols = 3
    rows = -(-len(attacks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows + 1.2), squeeze=False)
    clean = {r["method"]: r["accuracy"] for r in results if r["attack"] == "clean"}
    for ax, attack in zip(axes.flat, attacks):
        for m in methods:
            pts = sorted((r["eps"], r["accuracy"]) for r in results if r["method"] == m and r["attack"] == attack)
            ax.plot([0.0] + [p[0] for p in pts], [clean[m]] + [p[1] for p in pts], marker="o", markersize=3,
                    label=m, **styles.get(m, {}))
        ax.set_title(attack)
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    cfg, split = summary["config"], summary["split"]
    fig.suptitle(f"{cfg['dataset']}: accuracy under attack ({split['n_train']} training / {split['n_test']} test "
                 f"images, {cfg['epochs']} epochs, teachers trained at eps={cfg['train_eps']})")
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 5), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_teacher_weights(summary, path):
    """Mean weight of each teacher per epoch, one panel per multi-teacher student."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    students = {k: v for k, v in summary["teacher_weights"].items() if len(v) and len(v[0]) > 1}
    if not students:
        return
    fig, axes = plt.subplots(1, len(students), figsize=(4.5 * len(students), 3.6), squeeze=False)
    for ax, (name, w) in zip(axes.flat, students.items()):
        for k, label in enumerate(summary["teacher_names"]):
            ax.plot(range(1, len(w) + 1), [row[k] for row in w], marker=".", label=f"teacher {label}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean weight over training batches")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.suptitle(f"{summary['config']['dataset']}: mean teacher weight per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
