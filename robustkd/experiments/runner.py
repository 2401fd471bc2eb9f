"""The runner of :func:`reproduce`: fit or load each model, evaluate it, write the result files."""
import csv
import dataclasses
import json
import logging
import os
import time

import joblib

from ..datasets import DATASETS, load_split
from ._evaluation import (MODEL_FORMAT, _eval_key, _evaluate_or_load, _key, _report, eval_attacks,  # noqa: F401
                          union_members, with_union)
from .config import teacher_spec
from ._provenance import provenance  # noqa: F401  (tests read it here)
from .plots import plot_results, plot_teacher_weights, plot_tradeoff

logger = logging.getLogger(__name__)

__all__ = ["reproduce"]


def _epochs_trained(model):
    """Finished epochs of a fitted net, or the fewest of a pool's teachers."""
    nets = getattr(model, "teachers_", None)
    if nets is not None and not hasattr(model, "module_"):
        return min(_epochs_trained(t) for t in nets)
    return sum(1 for row in model.history if "dur" in row)


def _finished(model, epochs):
    """Whether a fitted net (or every teacher of a pool) trained all ``epochs``, or was ended on purpose by a
    callback that says so in its history (``stopped_early``, e.g. :class:`~robustkd.callbacks.RobustEarlyStopping`)."""
    nets = getattr(model, "teachers_", None)
    if nets is not None and not hasattr(model, "module_"):
        return all(_finished(t, epochs) for t in nets)
    return _epochs_trained(model) == epochs or bool(len(model.history) and model.history[-1].get("stopped_early"))


def _fit_or_load(path, make, X, y, epochs, log):
    """Load a finished model from ``path``, or fit it and save it there with its fit time.

    A file is reused only if it holds a model that trained all ``epochs``; nothing is saved
    unless the fit finished (a ``KeyboardInterrupt`` propagates before the save). The file
    is written under a temporary name and renamed, so a killed run never leaves half a file.
    """
    if os.path.exists(path):
        saved = joblib.load(path)
        if isinstance(saved, dict) and saved.get("format") == MODEL_FORMAT and _finished(saved["model"], epochs):
            log("reusing", os.path.basename(path))
            return saved["model"], saved["fit_seconds"], True
        logger.warning("%s is not a finished model of this run; training it again", path)
    start = time.perf_counter()
    model = make().fit(X, y)
    seconds = time.perf_counter() - start
    if not _finished(model, epochs):
        raise RuntimeError(f"{os.path.basename(path)} trained {_epochs_trained(model)} of {epochs} epochs; "
                           "not saving it as a finished model")
    tmp = path + ".tmp"
    joblib.dump({"format": MODEL_FORMAT, "model": model, "fit_seconds": seconds}, tmp)
    os.replace(tmp, path)
    return model, seconds, False


def student_architecture(cfg):
    """The students' ``module__*`` parameters where ``cfg`` makes them another size than the teachers' (the
    :class:`~robustkd.SmallCNN` defaults); empty where they are the teachers' size."""
    from ..models import SmallCNN
    import inspect

    defaults = inspect.signature(SmallCNN).parameters
    arch = {}
    if cfg.student_channels is not None and tuple(cfg.student_channels) != defaults["channels"].default:
        arch["module__channels"] = tuple(cfg.student_channels)
    if cfg.student_hidden is not None and cfg.student_hidden != defaults["hidden"].default:
        arch["module__hidden"] = cfg.student_hidden
    return arch


def _arch_key(arch):
    """The part of a student's model key that names its size (none for the teachers' size: the keys of earlier
    runs stay valid)."""
    return {"student": {k.replace("module__", ""): list(v) if isinstance(v, tuple) else v
                        for k, v in arch.items()}} if arch else {}


def reproduce(cfg, progress=None):
    """Run the experiment described by ``cfg`` and write its files under ``cfg.out``.

    Every model is saved under ``cfg.out/models`` when, and only when, its fit finished, with
    its fit time; a second run with the same settings reuses finished models and reports
    their recorded fit times. After an interruption (Ctrl-C), a re-run trains what was not
    finished and gives the same numbers as an uninterrupted run: each model is seeded on
    its own, so it does not matter which of them were reused. Each model's evaluation is saved under
    ``cfg.out/evaluations`` when it finishes and reused, with its recorded time, by a re-run with the same
    model file and evaluation settings. Settings left unset (None) come from the data set's protocol
    (:data:`~robustkd.experiments.PROTOCOLS`); ``results.json``'s ``config`` holds the values used.

    Parameters
    ----------
    cfg : ExperimentConfig
        The settings.
    progress : callable, optional
        ``progress(stage, name)`` with ``stage`` one of ``"training"``, ``"reusing"``,
        ``"evaluating"`` (a step starts) and ``"done"`` (it ended); the command line draws a
        progress bar from it. Per-epoch lines go to the ``robustkd.progress`` logger
        (:class:`~robustkd.experiments._progress.EpochLog`).

    Returns
    -------
    dict
        ``{"config", "split", "methods", "results", "teacher_weights", "timings", "provenance"}``, as
        written to ``results.json``; ``results`` holds one record per method, attack and eps;
        ``provenance`` the package versions and each evaluation attack's implementation and parameters.
    """
    import numpy as np

    from sklearn.base import clone
    from sklearn.model_selection import StratifiedShuffleSplit
    from skorch.dataset import ValidSplit

    from ..callbacks import OneCycleSchedule, RobustEarlyStopping
    from ._progress import EpochLog
    from ..distillation import MultiTeacherDistiller, resolve_feature_matching, teacher_diagnostics
    from ..evaluation import robustness_report
    from ..models import SmallCNN
    from ..training import AdversarialTeacher, TeacherPool

    def log(stage, name):
        if progress is not None:
            progress(stage, name)
        else:
            logger.info("%s %s", stage, name)

    cfg = cfg.check().resolved().check()
    os.makedirs(os.path.join(cfg.out, "models"), exist_ok=True)
    X_train, X_test, y_train, y_test = load_split(cfg.dataset, cfg.data_home, cfg.download, cfg.seed,
                                                  cfg.n_train, cfg.n_test)
    n_classes = DATASETS[cfg.dataset].n_classes
    if cfg.valid_size and not n_classes <= cfg.valid_size <= len(X_train) - n_classes:
        raise ValueError(f"valid_size must leave training images on both sides: between {n_classes} and "
                         f"{len(X_train) - n_classes} for {len(X_train)} training images and {n_classes} classes "
                         f"(0: no robust selection); got valid_size={cfg.valid_size}")
    y_fit = y_train
    if cfg.labeled:     # a few labels: the others are marked unlabeled (-1), as scikit-learn's convention
        if not n_classes <= cfg.labeled <= len(X_train) - n_classes:
            raise ValueError(f"labeled must leave images on both sides: between {n_classes} and "
                             f"{len(X_train) - n_classes} for {len(X_train)} training images and {n_classes} "
                             f"classes; got labeled={cfg.labeled}")
        if cfg.valid_size and cfg.valid_size > cfg.labeled - n_classes:
            raise ValueError(f"valid_size must leave labeled images to train on: at most {cfg.labeled - n_classes} "
                             f"with labeled={cfg.labeled}; got valid_size={cfg.valid_size}")
        kept, _ = next(StratifiedShuffleSplit(n_splits=1, train_size=cfg.labeled, random_state=cfg.seed)
                       .split(X_train, y_train))
        y_fit = np.full_like(y_train, -1)
        y_fit[kept] = y_train[kept]
    common = dict(module__input_shape=tuple(X_train.shape[1:]), module__n_classes=n_classes, lr=cfg.lr,
                  max_epochs=cfg.epochs, batch_size=cfg.batch_size, train_split=None, verbose=0, device=cfg.device)
    data_key = dict(dataset=cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                    epochs=cfg.epochs, batch_size=cfg.batch_size, n=len(X_train), lr=cfg.lr,
                    lr_schedule=cfg.lr_schedule, format=MODEL_FORMAT, **({"labeled": cfg.labeled} if cfg.labeled else {}))

    def callbacks(name):
        return [EpochLog(name)] + ([OneCycleSchedule()] if cfg.lr_schedule == "onecycle" else [])
    models, timings, reused, files = {}, {}, {}, {}

    def path(name, **extra):
        return os.path.join(cfg.out, "models", f"{name}-{_key(**data_key, **extra)}.joblib")

    def fit(name, make, data=None, **extra):
        log("training", name)
        files[name] = path(name, **extra)
        X, y = (X_train, y_fit) if data is None else data
        models[name], timings[name], reused[name] = _fit_or_load(files[name], make, X, y, cfg.epochs,
                                                                 lambda *a: log(*a))
        log("done", name)
        return models[name]

    fit("standard", lambda: AdversarialTeacher(SmallCNN, attack=None, random_state=cfg.seed,
                                               callbacks=callbacks("standard"), **common))
    teacher_key = dict(attacks=list(cfg.attacks), train_eps=cfg.train_eps, valid_size=cfg.valid_size)
    specs = [teacher_spec(a) for a in cfg.attacks]
    labels = [name if eps is None else f"{name}@{eps:g}" for name, eps in specs]
    log("training", f"{len(cfg.attacks)} teachers ({', '.join(cfg.attacks)})")
    selection = {}
    if cfg.valid_size:  # robust model selection on training images held out from the teachers (never the test set)
        selection = dict(train_split=ValidSplit(StratifiedShuffleSplit(test_size=cfg.valid_size,
                                                                       random_state=cfg.seed), stratified=True))
    template = AdversarialTeacher(SmallCNN, eps=cfg.train_eps, **{**common, **selection}, callbacks=callbacks(
        "teacher_{attack}") + ([RobustEarlyStopping(max_samples=cfg.valid_size, random_state=cfg.seed)]
                               if cfg.valid_size else []))

    def teachers(name, prefix, template, **extra):
        pool_file = path(name, **teacher_key, **extra)
        pool, _, was_reused = _fit_or_load(pool_file, lambda: TeacherPool(
            template, attacks=[name if eps is None else (name, eps) for name, eps in specs], n_jobs=cfg.n_jobs,
            random_state=cfg.seed), X_train, y_fit, cfg.epochs, lambda *a: log(*a))
        log("done", name)
        for label, teacher in zip(labels, pool.teachers_):
            models[f"{prefix}{label}"] = teacher
            timings[f"{prefix}{label}"] = float(sum(teacher.history[:, "dur"]))
            reused[f"{prefix}{label}"] = was_reused
            files[f"{prefix}{label}"] = pool_file
        return pool
    pool = teachers("teachers", "teacher_", template)

    arch = student_architecture(cfg)    # {} for the teachers' size
    student = dict(common, temperature=cfg.temperature, alpha=cfg.alpha, random_state=cfg.seed, **arch)
    kd_key = dict(teacher_key, temperature=cfg.temperature, alpha=cfg.alpha, **_arch_key(arch))
    gm = cfg.gradient_matching
    fm = resolve_feature_matching(cfg.feature_matching, X_train.shape[1:])    # "auto": from the image size

    def distiller(name, teachers, **kwargs):
        return MultiTeacherDistiller(teachers, module=SmallCNN, callbacks=callbacks(name), **kwargs, **student)

    def students(suffix, **extra):
        """Single-teacher, uniform and adaptive students; ``extra`` holds the gradient term (in their keys)."""
        term = {"gradient_matching": 0.0, "feature_matching": 0.0, **extra}
        for label, teacher in zip(labels, pool.teachers_):
            name = f"kd_{label}{suffix}"
            fit(name, lambda t=teacher, n=name: distiller(n, [t], weighter="uniform", **term),
                **kd_key, single=label, **extra)
        fit(f"mtkd_uniform{suffix}", lambda: distiller(f"mtkd_uniform{suffix}", pool, weighter="uniform", **term),
            **kd_key, **extra)
        fit(f"mtkd_adaptive{suffix}", lambda: distiller(f"mtkd_adaptive{suffix}", pool, weighter=cfg.scheme, **term),
            **kd_key, scheme=cfg.scheme, **extra)
    students("")                                   # the paper's MTKD-AR (no gradient term) and its baselines
    if gm:
        students("_gm", gradient_matching=gm)      # the same with input-gradient matching
        if len(labels) > 1:                        # robustkd's default recipe: equal weights, both terms
            default = dict(gradient_matching=gm, recipe="default", feature_matching=fm,
                           weights="uniform")
            fit("mtkd_default", lambda: distiller("mtkd_default", pool, gradient_matching=gm,
                                                  feature_matching=fm), **kd_key, **default)
            if cfg.labeled:     # the default student without the unlabeled images, and with self-training teachers
                fit("mtkd_default_labeled", lambda: distiller("mtkd_default_labeled", pool, gradient_matching=gm,
                                                              feature_matching=fm),
                    data=(X_train[y_fit >= 0], y_fit[y_fit >= 0]), **kd_key, **default, labeled_only=True)
                log("training", f"{len(cfg.attacks)} robust self-training teachers")
                rst = teachers("teachers_rst", "teacher_rst_", clone(template).set_params(pseudo_labeler=models["standard"]),
                               pseudo_labels="standard")
                fit("mtkd_default_rst", lambda: distiller("mtkd_default_rst", rst, gradient_matching=gm,
                                                          feature_matching=fm),
                    **kd_key, **default, teachers="rst")
    if cfg.adversarial_student:
        fit("mtkd_adversarial", lambda: distiller("mtkd_adversarial", pool, weighter=cfg.scheme, gradient_matching=0.0,
                                                  feature_matching=0.0, student_inputs="adversarial",
                                                  student_attack=cfg.student_attack, student_eps=cfg.train_eps),
            **kd_key, scheme=cfg.scheme, adversarial=cfg.student_attack)

    if arch:    # the baseline a smaller student has to beat: its own direct adversarial training
        direct = f"direct_{cfg.student_attack}"
        fit(direct, lambda: AdversarialTeacher(
            SmallCNN, attack=cfg.student_attack, eps=cfg.train_eps, random_state=cfg.seed,
            **{**common, **selection, **arch}, callbacks=callbacks(direct) + (
                [RobustEarlyStopping(max_samples=cfg.valid_size, random_state=cfg.seed)] if cfg.valid_size else [])),
            train_eps=cfg.train_eps, valid_size=cfg.valid_size, direct=cfg.student_attack, **_arch_key(arch))

    results = []
    os.makedirs(os.path.join(cfg.out, "evaluations"), exist_ok=True)
    described = provenance(eval_attacks(cfg), models["standard"].module_, cfg.eps[0])
    for name, model in models.items():
        log("evaluating", name)
        key = _eval_key(files[name], cfg, len(X_test), described)
        rows, timings[f"eval_{name}"] = _evaluate_or_load(
            os.path.join(cfg.out, "evaluations", f"{name}-{key}.json"),
            lambda m=model: _report(robustness_report, m, X_test, y_test, cfg), lambda *a: log(*a), name)
        results.extend(dict(method=name, **row) for row in with_union(rows, cfg))
        log("done", f"evaluating {name}")
    log("evaluating", "diagnostics")
    n_diag = min(len(X_test), 1000)
    distilled = [n for n, m in models.items() if isinstance(m, MultiTeacherDistiller)]
    diagnostics = teacher_diagnostics(list(pool.teachers_) + [models[n] for n in distilled], X_test[:n_diag],
                                      y_test[:n_diag])
    diagnostics.update(models=[f"teacher_{label}" for label in labels] + distilled, n_samples=n_diag)
    log("done", "diagnostics")

    weights = {name: np.asarray(m.mean_teacher_weights()).tolist() for name, m in models.items()
               if isinstance(m, MultiTeacherDistiller)}
    summary = {
        "config": dataclasses.asdict(dataclasses.replace(cfg, feature_matching=fm)),   # the weight used
        "split": {"n_train": len(X_train), "n_test": len(X_test), "n_classes": n_classes},
        "methods": list(models),
        "reused": reused,
        "results": results,
        "teacher_weights": weights,
        "teacher_names": labels,
        "union": union_members(cfg),
        "parameters": {name: sum(p.numel() for p in model.module_.parameters()) for name, model in models.items()},
        "diagnostics": diagnostics,
        "timings": timings,
        "provenance": described,
    }
    _write(cfg.out, summary)
    return summary


def _write(out, summary):
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "results.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "attack", "eps", "accuracy", "n_samples", "threat_model"],
                                restval="")
        writer.writeheader()
        writer.writerows(summary["results"])
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed: no plots written (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    plot_tradeoff(summary, os.path.join(out, "tradeoff.png"))
    plot_results(summary, os.path.join(out, "accuracy_vs_eps.png"))
    plot_teacher_weights(summary, os.path.join(out, "teacher_weights.png"))


