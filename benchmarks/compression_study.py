"""The compression study: students smaller than their teachers, distilled from them or adversarially trained
directly, scored clean and with AutoAttack; one table, and robust accuracy against parameters as a plot.

The teachers are the protocol's (``robustkd.experiments.PROTOCOLS[dataset]``: for Fashion-MNIST, FGSM, FGSM-RS
and N-FGSM SmallCNNs at eps 0.1, a one-cycle learning rate, each teacher's most robust epoch on 1,000 held-out
training images), trained once per seed and shared by every student. Each student size is ``C1,C2:H``
(:class:`~robustkd.SmallCNN` ``channels=(C1, C2), hidden=H``; ``16,32:64`` has 1/4 of the teachers'
parameters on 28x28 images, ``8,16:32`` 1/16). The methods:

* ``default``: robustkd's default clean-data student (equal weights, gradient and feature matching);
* ``mtkd_ar``: the paper's plain MTKD-AR (``weighter="confidence"``, no gradient or feature term);
* ``ard``: the student's own adversarial examples (PGD-10 at the teachers' eps) distilled from the teachers'
  clean outputs (``student_inputs="adversarial"``; equal weights);
* ``rslad``: RSLAD (``student_inputs="rslad", alpha=5/6, temperature=1``; equal weights);
* ``direct_<attack>``: the student's architecture adversarially trained directly, with the teachers' schedule
  and robust model selection: ``direct_fgsm_rs``, ``direct_nfgsm``, ``direct_pgd`` (PGD-10, its budget
  ramped up over the first three epochs by :class:`~robustkd.callbacks.EpsilonWarmup`: without it the small
  students never left chance level) and ``direct_trades`` (TRADES with its KL attack, 10 steps).

A distilled method may name its weighting scheme after ``@``: ``rslad@student_gap`` is RSLAD with
``weighter="student_gap"`` (the methods' own weighting otherwise).

Every model trains for the protocol's epochs (``--epochs`` to change it) and is saved under ``OUT/models``
with its fit time, and reused by a re-run; evaluations are saved under ``OUT/evaluations``. AutoAttack runs
at ``--eps`` on the first ``--n-test`` test images, clean accuracy on every test image (each model as soon as it
is trained; the teachers last, with ``--score-teachers``). It prints the table,
then per size and seed each distilled method's AutoAttack and clean gap to the best direct training, and
writes ``OUT/study.json`` and ``OUT/compression.png``.

    python benchmarks/compression_study.py --dataset fashion-mnist --data-home ../shared/data --out study \\
        --sizes 16,32:64,8,16:32 --seeds 0,1
    python benchmarks/compression_study.py --dataset digits --out study_digits --sizes 8,16:32 --n-test 0
"""
import argparse
import json
import os
import time

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedShuffleSplit
from skorch.dataset import ValidSplit

from robustkd import (AdversarialTeacher, MultiTeacherDistiller, RobustEarlyStopping, SmallCNN, TeacherPool,
                      load_split, robust_score)
from robustkd.callbacks import EpsilonWarmup, OneCycleSchedule
from robustkd.datasets import DATASETS
from robustkd.experiments import PROTOCOLS

DIRECT = {"direct_fgsm_rs": dict(attack="fgsm_rs"), "direct_nfgsm": dict(attack="nfgsm"),
          "direct_pgd": dict(attack="pgd"), "direct_trades": dict(attack="pgd_kl", objective="trades")}
WARMUP = {"direct_pgd": EpsilonWarmup(epochs=3)}
DISTILLED = {"default": dict(),
             "mtkd_ar": dict(weighter="confidence", gradient_matching=0.0, feature_matching=0.0),
             "ard": dict(student_inputs="adversarial", student_attack="pgd", weighter="uniform",
                         gradient_matching=0.0, feature_matching=0.0),
             "rslad": dict(student_inputs="rslad", alpha=5 / 6, temperature=1.0, weighter="uniform",
                           gradient_matching=0.0, feature_matching=0.0)}
METHODS = list(DISTILLED) + list(DIRECT)


def parse_sizes(text):
    """``"16,32:64,8,16:32"`` -> ``[((16, 32), 64), ((8, 16), 32)]``."""
    numbers = [int(t) for t in text.replace(":", ",").split(",") if t]
    if len(numbers) % 3:
        raise argparse.ArgumentTypeError(f"sizes are C1,C2:H, comma-separated; got {text!r}")
    return [((numbers[i], numbers[i + 1]), numbers[i + 2]) for i in range(0, len(numbers), 3)]


def size_name(size):
    (c1, c2), hidden = size
    return f"{c1},{c2}:{hidden}"


def selected_by_protocol(protocol, seed):
    """The teachers' robust model selection on held-out training images, as ``(params, callbacks)`` (none when
    the protocol has none)."""
    if not protocol["valid_size"]:
        return {}, []
    split = ValidSplit(StratifiedShuffleSplit(test_size=protocol["valid_size"], random_state=seed), stratified=True)
    return {"train_split": split}, [RobustEarlyStopping(max_samples=protocol["valid_size"], random_state=seed)]


def fit_or_load(path, make, X, y):
    if os.path.exists(path):
        saved = joblib.load(path)
        return saved["model"], saved["fit_seconds"], True
    start = time.perf_counter()
    model = make().fit(X, y)
    seconds = time.perf_counter() - start
    joblib.dump({"model": model, "fit_seconds": seconds}, path + ".tmp")
    os.replace(path + ".tmp", path)
    return model, seconds, False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--out", default="compression_study")
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("16,32:64,8,16:32"),
                        help="student sizes C1,C2:H (SmallCNN channels and hidden width), comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (teachers, students, attacks)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--n-train", type=int, default=None, help="a random subset of the training set")
    parser.add_argument("--n-test", type=int, default=1000, help="AutoAttack on the first N test images (0: all)")
    parser.add_argument("--eps", type=float, default=None, help="AutoAttack's budget (default: the teachers')")
    parser.add_argument("--jobs", type=int, default=-1, help="n_jobs of the evaluation")
    parser.add_argument("--score-teachers", nargs="?", const="all", default=None, metavar="ATTACKS",
                        help="score the teachers too, after the students (all, or those of the comma-separated "
                             "training attacks)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(m for m in methods if m.partition("@")[0] not in (DISTILLED if "@" in m else METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS} (a distilled one may add @scheme)")
    protocol = PROTOCOLS[args.dataset]
    epochs = args.epochs or protocol["epochs"]
    eps = args.eps or protocol["train_eps"]
    X_train, X_test, y_train, y_test = load_split(args.dataset, args.data_home, seed=0, n_train=args.n_train)
    n_aa = args.n_test or len(X_test)
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "evaluations"), exist_ok=True)
    common = dict(module__input_shape=tuple(X_train.shape[1:]), module__n_classes=DATASETS[args.dataset].n_classes,
                  lr=protocol["lr"], max_epochs=epochs, batch_size=64, train_split=None, verbose=0)
    schedule = [OneCycleSchedule()] if protocol["lr_schedule"] == "onecycle" else []
    tag = f"{args.dataset}-n{args.n_train or 'all'}-e{epochs}"
    print(f"{args.dataset}: {len(X_train)} training images, AutoAttack at eps {eps:g} on {n_aa} test images, "
          f"{epochs} epochs; teachers {list(protocol['attacks'])} at eps {protocol['train_eps']:g}")

    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        split, stopping = selected_by_protocol(protocol, seed)
        template = AdversarialTeacher(SmallCNN, eps=protocol["train_eps"], **{**common, **split},
                                      callbacks=schedule + stopping)
        pool, pool_seconds, _ = fit_or_load(
            os.path.join(args.out, "models", f"teachers-{tag}-s{seed}.joblib"),
            lambda: TeacherPool(template, attacks=list(protocol["attacks"]), random_state=seed), X_train, y_train)
        print(f"seed {seed}: teachers trained in {pool_seconds:.0f} s")
        candidates = []
        for size in args.sizes:
            arch = dict(module__channels=size[0], module__hidden=size[1])
            for method in methods:
                if method in DIRECT:
                    def make(method=method, arch=arch):
                        warmup = [clone(WARMUP[method])] if method in WARMUP else []
                        return AdversarialTeacher(SmallCNN, eps=protocol["train_eps"], random_state=seed,
                                                  **{**common, **split, **arch}, **DIRECT[method],
                                                  callbacks=schedule + warmup + stopping)
                else:
                    def make(method=method, arch=arch):
                        base, _, scheme = method.partition("@")
                        weighting = dict(weighter=scheme) if scheme else {}
                        return MultiTeacherDistiller(pool, module=SmallCNN, student_eps=protocol["train_eps"],
                                                     random_state=seed, **common, **arch,
                                                     **{**DISTILLED[base], **weighting}, callbacks=list(schedule))
                candidates.append((size_name(size), method, make))
        if args.score_teachers:
            chosen = None if args.score_teachers == "all" else args.score_teachers.split(",")
            candidates += [("teachers", f"teacher_{t.attack}", lambda t=t: t) for t in pool.teachers_
                           if chosen is None or t.attack in chosen]
        for size, method, make in candidates:     # each model scored as soon as it is trained
            if size == "teachers":
                model, seconds = make(), pool_seconds
            else:
                path = os.path.join(args.out, "models", f"{method}-{size}-{tag}-s{seed}.joblib".replace(
                    ",", "_").replace(":", "_"))
                model, seconds, _ = fit_or_load(path, make, X_train, y_train)
            rows.append(evaluate(args, model, size, method, seconds, seed, tag, eps, n_aa, X_test, y_test))
    summarize(rows)
    with open(os.path.join(args.out, "study.json"), "w", encoding="utf-8") as f:
        json.dump({"dataset": args.dataset, "eps": eps, "n_autoattack": n_aa, "epochs": epochs,
                   "n_train": len(X_train), "rows": rows}, f, indent=2)
    plot(rows, os.path.join(args.out, "compression.png"), eps)


def evaluate(args, model, size, method, seconds, seed, tag, eps, n_aa, X_test, y_test):
    """Clean accuracy on every test image and AutoAttack on the first ``n_aa``, saved and reused."""
    key = f"{method}-{size}-{tag}-s{seed}-eps{eps:g}-aa{n_aa}".replace(",", "_").replace(":", "_")
    path = os.path.join(args.out, "evaluations", key + ".json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            row = json.load(f)
    else:
        start = time.perf_counter()
        clean = robust_score(model, X_test, y_test, eps=0)
        aa = robust_score(model, X_test[:n_aa], y_test[:n_aa], "autoattack", eps=eps, random_state=seed,
                          n_jobs=args.jobs)
        row = dict(seed=seed, size=size, method=method, clean=clean, autoattack=aa,
                   parameters=int(sum(p.numel() for p in model.module_.parameters())),
                   eval_seconds=time.perf_counter() - start)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(row, f)
    row["fit_seconds"] = seconds
    print(f"{row['size']:>9s} {row['parameters']:8d} {row['method']:16s} seed {seed}  clean {row['clean']:.4f}  "
          f"autoattack {row['autoattack']:.4f}  fit {row['fit_seconds']:7.0f} s  (scored in "
          f"{row['eval_seconds']:.0f} s)", flush=True)
    return row


def summarize(rows):
    """Per size and seed: each distilled method against the best direct training (by AutoAttack accuracy)."""
    print()
    for size in dict.fromkeys(r["size"] for r in rows if r["size"] != "teachers"):
        for seed in dict.fromkeys(r["seed"] for r in rows):
            cell = {r["method"]: r for r in rows if r["size"] == size and r["seed"] == seed}
            direct = [cell[m] for m in DIRECT if m in cell]
            if not direct:
                continue
            best = max(direct, key=lambda r: r["autoattack"])
            print(f"size {size}, seed {seed}: best direct training {best['method']} (autoattack {best['autoattack']:.4f},"
                  f" clean {best['clean']:.4f}, fit {best['fit_seconds']:.0f} s)")
            for m, r in cell.items():
                if m not in DIRECT:
                    print(f"    {m:8s} autoattack {100 * (r['autoattack'] - best['autoattack']):+6.2f} points, clean "
                          f"{100 * (r['clean'] - best['clean']):+6.2f}, fit {r['fit_seconds'] / best['fit_seconds']:.2f}x")


def plot(rows, path, eps):
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows if r["size"] != "teachers"):
        points = {}
        for r in rows:
            if r["method"] == method:
                points.setdefault(r["parameters"], []).append(r["autoattack"])
        if points:
            xs = sorted(points)
            ax.plot(xs, [np.mean(points[x]) for x in xs], marker="o", linestyle="--" if method in DIRECT else "-",
                    label=method)
    teachers = [r["autoattack"] for r in rows if r["size"] == "teachers"]
    if teachers:
        ax.axhline(max(teachers), color="0.5", linestyle=":", label="best teacher")
    ax.set_xscale("log")
    ax.set_xlabel("student parameters")
    ax.set_ylabel(f"AutoAttack accuracy at eps {eps:g} (mean over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
