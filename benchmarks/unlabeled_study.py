"""The unlabeled-data study: a few labeled training images and many unlabeled ones, against models trained on
the labeled images alone; clean and AutoAttack accuracy, fit times, a plot.

Per seed and per ``--labeled N``: N training images keep their labels (stratified by the seed, as
``robustkd reproduce --labeled N`` draws them), the others are marked unlabeled (-1, scikit-learn's
convention). The teachers are the protocol's (``robustkd.experiments.PROTOCOLS[dataset]``: for Fashion-MNIST,
FGSM, FGSM-RS and N-FGSM SmallCNNs at eps 0.1, a one-cycle learning rate, each teacher's most robust epoch on
1,000 held-out labeled images; ``--valid-size`` holds out fewer where there are few labels). The methods,
each a row (a teacher pool gives one row per teacher):

* ``teachers``: the protocol's teachers on the N labeled images alone (the best direct adversarial training
  there is on them);
* ``default_labeled``: robustkd's default clean-data student of those teachers, on the N alone;
* ``default``: the same student on all the images, the unlabeled ones included (they get the teachers'
  terms, never a hard-label term);
* ``rst_teachers``: the protocol's teachers by robust self-training (Carmon et al., 2019): the unlabeled
  images pseudo-labelled by a standard SmallCNN fitted on the N (``AdversarialTeacher(pseudo_labeler=...)``);
* ``default_rst``: the default student of the self-training teachers, on all the images;
* ``rslad`` / ``rslad_rst``: RSLAD's student (its adversarial examples and every term on the teachers' soft
  labels, so an unlabeled image needs no label) of either pool, on all the images.

Every model trains the protocol's epochs (``--epochs`` to change it), is saved under ``OUT/models`` with its
fit time and reused by a re-run; each is scored as soon as it is trained, in the order of ``--methods``:
clean accuracy on every test image, AutoAttack at the teachers' eps on the first ``--n-test``. The standard
model's clean accuracy and the accuracy of its pseudo-labels are printed. At the end: the table, per
labeled count and seed each row's gap to the best model trained on the labeled images alone, and
``OUT/study.json`` and ``OUT/unlabeled.png``.

    python benchmarks/unlabeled_study.py --dataset fashion-mnist --data-home ../shared/data --out study_unl \\
        --labeled 6000 --seeds 0,1
"""
import argparse
import json
import os

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from compression_study import evaluate, fit_or_load, selected_by_protocol
from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, load_split
from robustkd.callbacks import OneCycleSchedule
from robustkd.datasets import DATASETS
from robustkd.experiments import PROTOCOLS

POOLS = {"teachers": "teacher", "rst_teachers": "rst"}
STUDENTS = {"default_labeled": ("teachers", dict(), True),
            "default": ("teachers", dict(), False),
            "default_rst": ("rst_teachers", dict(), False),
            "rslad": ("teachers", dict(student_inputs="rslad", alpha=5 / 6, temperature=1.0, gradient_matching=0.0,
                                       feature_matching=0.0), False),
            "rslad_rst": ("rst_teachers", dict(student_inputs="rslad", alpha=5 / 6, temperature=1.0,
                                               gradient_matching=0.0, feature_matching=0.0), False)}
METHODS = ["teachers", "default", "default_labeled", "rst_teachers", "default_rst", "rslad", "rslad_rst"]


def labeled_split(y, n_labeled, seed):
    """``y`` with all but ``n_labeled`` labels (stratified, drawn by ``seed``) replaced by -1."""
    kept, _ = next(StratifiedShuffleSplit(n_splits=1, train_size=n_labeled, random_state=seed).split(y, y))
    y_fit = np.full_like(y, -1)
    y_fit[kept] = y[kept]
    return y_fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--out", default="unlabeled_study")
    parser.add_argument("--labeled", default="6000", help="comma-separated counts of labeled training images")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}; "
                                                                     "trained and scored in this order")
    parser.add_argument("--score", default=None, metavar="ROWS",
                        help="score only these teachers, comma-separated rows such as teacher_fgsm_rs,rst_fgsm_rs "
                             "(default: every teacher)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (split, models, attacks)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--valid-size", type=int, default=None,
                        help="labeled images each teacher holds out to keep its most robust epoch (default: the "
                             "protocol's; at most the smallest --labeled count minus the number of classes)")
    parser.add_argument("--n-test", type=int, default=1000, help="AutoAttack on the first N test images (0: all)")
    parser.add_argument("--jobs", type=int, default=-1, help="n_jobs of the evaluation")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    protocol = dict(PROTOCOLS[args.dataset])
    epochs = args.epochs or protocol["epochs"]
    eps = protocol["train_eps"]
    counts = [int(n) for n in args.labeled.split(",")]
    n_classes = DATASETS[args.dataset].n_classes
    if args.valid_size is not None:
        protocol["valid_size"] = args.valid_size
    if protocol["valid_size"] and not n_classes <= protocol["valid_size"] <= min(counts) - n_classes:
        parser.error(f"--valid-size must hold out every class and leave labeled images to train on: 0 (no robust "
                     f"selection) or between {n_classes} and {min(counts) - n_classes} with --labeled "
                     f"{min(counts)}; got {protocol['valid_size']}")
    valid_tag = "" if protocol["valid_size"] == PROTOCOLS[args.dataset]["valid_size"] else f"-v{protocol['valid_size']}"
    X_train, X_test, y_train, y_test = load_split(args.dataset, args.data_home, seed=0)
    n_aa = args.n_test or len(X_test)
    for folder in ("models", "evaluations"):
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
    common = dict(module__input_shape=tuple(X_train.shape[1:]), module__n_classes=n_classes,
                  lr=protocol["lr"], max_epochs=epochs, batch_size=64, train_split=None, verbose=0)
    schedule = [OneCycleSchedule()] if protocol["lr_schedule"] == "onecycle" else []
    scored = None if args.score is None else args.score.split(",")
    print(f"{args.dataset}: {len(X_train)} training images, AutoAttack at eps {eps:g} on {n_aa} test images, "
          f"{epochs} epochs; teachers {list(protocol['attacks'])} at eps {eps:g}")

    rows = []
    for n_labeled in counts:
        for seed in [int(s) for s in args.seeds.split(",")]:
            y_fit = labeled_split(y_train, n_labeled, seed)
            group, tag = f"{n_labeled} labels", f"{args.dataset}-l{n_labeled}-e{epochs}{valid_tag}-s{seed}"
            models = {}

            def path(name):
                return os.path.join(args.out, "models", f"{name}-{tag}.joblib")

            def standard():
                if "standard" not in models:
                    net, seconds, _ = fit_or_load(path("standard"), lambda: AdversarialTeacher(
                        SmallCNN, attack=None, random_state=seed, **common, callbacks=list(schedule)), X_train, y_fit)
                    unlabeled = y_fit == -1
                    print(f"{group}, seed {seed}: standard model (fit {seconds:.0f} s) clean "
                          f"{net.score(X_test, y_test):.4f}, its pseudo-labels right on "
                          f"{np.mean(net.predict(X_train[unlabeled]) == y_train[unlabeled]):.4f} of the "
                          f"{int(unlabeled.sum())} unlabeled images", flush=True)
                    models["standard"] = net
                return models["standard"]

            def pool(name):
                if name not in models:
                    split, stopping = selected_by_protocol(protocol, seed)
                    labeler = dict(pseudo_labeler=standard()) if name == "rst_teachers" else {}
                    template = AdversarialTeacher(SmallCNN, eps=eps, **{**common, **split}, **labeler,
                                                  callbacks=schedule + stopping)
                    models[name] = fit_or_load(path(name), lambda: TeacherPool(
                        template, attacks=list(protocol["attacks"]), random_state=seed), X_train, y_fit)[:2]
                    print(f"{group}, seed {seed}: {name} trained in {models[name][1]:.0f} s", flush=True)
                return models[name]

            for method in methods:
                if method in POOLS:
                    teachers, seconds = pool(method)
                    for t in teachers.teachers_:
                        row = f"{POOLS[method]}_{t.attack}"
                        if scored is None or row in scored:
                            rows.append(evaluate(args, t, group, row, seconds, seed, tag, eps, n_aa, X_test, y_test))
                    continue
                source, recipe, labeled_only = STUDENTS[method]
                teachers = pool(source)[0]
                data = (X_train[y_fit >= 0], y_fit[y_fit >= 0]) if labeled_only else (X_train, y_fit)
                model, seconds, _ = fit_or_load(path(method), lambda: MultiTeacherDistiller(
                    teachers, module=SmallCNN, student_eps=eps, random_state=seed, **common, **recipe,
                    callbacks=list(schedule)), *data)
                rows.append(evaluate(args, model, group, method, seconds, seed, tag, eps, n_aa, X_test, y_test))
    summarize(rows)
    with open(os.path.join(args.out, "study.json"), "w", encoding="utf-8") as f:
        json.dump({"dataset": args.dataset, "eps": eps, "n_autoattack": n_aa, "epochs": epochs,
                   "n_train": len(X_train), "rows": rows}, f, indent=2)
    plot(rows, os.path.join(args.out, "unlabeled.png"), eps)


def summarize(rows):
    """Per labeled count and seed: every row against the best model trained on the labeled images alone."""
    print()
    alone = ("teacher_", "default_labeled")
    for group in dict.fromkeys(r["size"] for r in rows):
        for seed in dict.fromkeys(r["seed"] for r in rows):
            cell = [r for r in rows if r["size"] == group and r["seed"] == seed]
            base = [r for r in cell if r["method"].startswith(alone)]
            if not base:
                continue
            best = max(base, key=lambda r: r["autoattack"])
            print(f"{group}, seed {seed}: best on the labeled images alone {best['method']} (autoattack "
                  f"{best['autoattack']:.4f}, clean {best['clean']:.4f}, fit {best['fit_seconds']:.0f} s)")
            for r in cell:
                if r is not best:
                    print(f"    {r['method']:16s} autoattack {100 * (r['autoattack'] - best['autoattack']):+6.2f} "
                          f"points, clean {100 * (r['clean'] - best['clean']):+6.2f}")


def plot(rows, path, eps):
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(r["size"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(methods) * len(groups)))
    labels, values, clean = [], [], []
    for group in groups:
        for method in methods:
            cell = [r for r in rows if r["size"] == group and r["method"] == method]
            if cell:
                labels.append(f"{method} ({group})" if len(groups) > 1 else method)
                values.append(np.mean([r["autoattack"] for r in cell]))
                clean.append(np.mean([r["clean"] for r in cell]))
    ys = np.arange(len(labels))[::-1]
    ax.barh(ys, values, color=["0.6" if lab.startswith(("teacher_", "default_labeled")) else "C0" for lab in labels])
    ax.plot(clean, ys, "k|", markersize=12)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy, mean over seeds")
    ax.set_title(f"AutoAttack at eps {eps:g} (bars) and clean (ticks); grey: the labeled images alone", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
