"""Weighting schemes for a small student, chosen by ``GridSearchCV`` on held-out training images: each scheme's
student scored with AutoAttack on images the teachers never trained on, per seed, against equal weights.

The teachers are the compression study's (``compression_study.py``: the protocol's FGSM, FGSM-RS and N-FGSM
SmallCNNs on every training image but the 1,000 their robust model selection holds out), loaded from its
``--out`` folder when they are there and fitted the same way otherwise. The held-out images are those 1,000
(the teachers chose their epoch on them but never took a gradient step on them); the students train on a
random ``--n-fit`` of the teachers' training images. The search is scikit-learn's own:
``GridSearchCV(MultiTeacherDistiller(...), [{"weighter": [scheme], "weighter__tau": [tau]}, ...],
cv=PredefinedSplit(...))`` with two scorers,
AutoAttack (``make_robust_scorer("autoattack")``) at the teachers' eps and clean accuracy, ``refit=False``.
The student is RSLAD's (``student_inputs="rslad"``, the recommended recipe for a small student) unless
``--recipe default`` asks for the default clean-data student.

It prints, per seed, each scheme's held-out AutoAttack and clean accuracy and fit time, then each scheme's
difference to the first (``uniform``) per seed, and writes ``OUT/scheme_search.json``. A scheme is
``SCHEME[:TAU]``, ``TAU`` the weighter's temperature (default 1; the default list sharpens the adaptive
schemes to 0.1, where their per-input weights differ from equal ones).

    python benchmarks/scheme_search.py --data-home ../shared/data --out study --seeds 0,1 \\
        --schemes uniform,confidence:0.1,robust_precision:0.1,student_gap:0.1
"""
import argparse
import json
import os

import numpy as np
from sklearn.model_selection import GridSearchCV, PredefinedSplit

from compression_study import DISTILLED, fit_or_load, parse_sizes, selected_by_protocol, size_name
from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, load_split, make_robust_scorer
from robustkd.callbacks import OneCycleSchedule
from robustkd.datasets import DATASETS
from robustkd.experiments import PROTOCOLS
from robustkd.weighting import available_schemes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--out", default="compression_study", help="the compression study's folder (teachers)")
    parser.add_argument("--size", type=parse_sizes, default=parse_sizes("8,16:32"), help="the student, C1,C2:H")
    parser.add_argument("--schemes", default="uniform,confidence:0.1,robust_precision:0.1,student_gap:0.1",
                        help=f"comma-separated SCHEME[:TAU] (the weighter's temperature, default 1), SCHEME from "
                             f"{','.join(available_schemes())}; the first is the reference")
    parser.add_argument("--recipe", choices=["rslad", "default"], default="rslad")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (teachers, students, attacks)")
    parser.add_argument("--n-fit", type=int, default=15000, help="training images of each student")
    parser.add_argument("--epochs", type=int, default=None, help="the students' epochs (default: the protocol's)")
    parser.add_argument("--n-held-out", type=int, default=None, help="score on the first N held-out images only")
    args = parser.parse_args()
    schemes = args.schemes.split(",")
    unknown = sorted({s.partition(":")[0] for s in schemes} - set(available_schemes()))
    if unknown:
        parser.error(f"unknown schemes {unknown}; choose from {available_schemes()}")
    grid = [{"weighter": [name], "weighter__tau": [float(tau or 1.0)]}
            for name, _, tau in (s.partition(":") for s in schemes)]
    protocol = PROTOCOLS[args.dataset]
    if not protocol["valid_size"]:
        parser.error(f"the {args.dataset} protocol holds no training images out of its teachers' fit; choose from "
                     f"{[name for name, p in PROTOCOLS.items() if p['valid_size']]}")
    eps = protocol["train_eps"]
    X, _, y, _ = load_split(args.dataset, args.data_home, seed=0)
    common = dict(module__input_shape=tuple(X.shape[1:]), module__n_classes=DATASETS[args.dataset].n_classes,
                  lr=protocol["lr"], max_epochs=protocol["epochs"], batch_size=64, train_split=None, verbose=0)
    schedule = [OneCycleSchedule()] if protocol["lr_schedule"] == "onecycle" else []
    (channels, hidden), = args.size
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)

    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        split, stopping = selected_by_protocol(protocol, seed)
        template = AdversarialTeacher(SmallCNN, eps=eps, **{**common, **split}, callbacks=schedule + stopping)
        pool, pool_seconds, _ = fit_or_load(     # the compression study's file name: its teachers are reused
            os.path.join(args.out, "models", f"teachers-{args.dataset}-nall-e{protocol['epochs']}-s{seed}.joblib"),
            lambda: TeacherPool(template, attacks=list(protocol["attacks"]), random_state=seed), X, y)
        # the teachers' held-out images: their ValidSplit's own splitter (it reads only y and len(X))
        trained, held_out = next(split["train_split"].cv.split(X, y))
        held_out = held_out[:args.n_held_out]
        fit_idx = np.random.default_rng(seed).choice(trained, size=min(args.n_fit, len(trained)), replace=False)
        index = np.concatenate([fit_idx, held_out])
        fold = np.r_[np.full(len(fit_idx), -1), np.zeros(len(held_out), dtype=int)]
        recipe = DISTILLED[args.recipe]
        student = MultiTeacherDistiller(pool, module=SmallCNN, student_eps=eps, random_state=seed,
                                        **{**common, "max_epochs": args.epochs or protocol["epochs"]},
                                        module__channels=channels, module__hidden=hidden, **recipe,
                                        callbacks=list(schedule))
        search = GridSearchCV(student, grid, cv=PredefinedSplit(fold), refit=False, n_jobs=1,
                              scoring={"autoattack": make_robust_scorer("autoattack", eps=eps, random_state=seed),
                                       "clean": "accuracy"})
        print(f"seed {seed}: teachers ({pool_seconds:.0f} s of fitting) from {args.out}; {len(fit_idx)} training "
              f"and {len(held_out)} held-out images; the {args.recipe} student {size_name(args.size[0])}", flush=True)
        search.fit(X[index], y[index])
        results = search.cv_results_
        for i, params in enumerate(results["params"]):
            scheme = f"{params['weighter']}:{params['weighter__tau']:g}"
            row = dict(seed=seed, scheme=scheme, autoattack=float(results["mean_test_autoattack"][i]),
                       clean=float(results["mean_test_clean"][i]), fit_seconds=float(results["mean_fit_time"][i]))
            rows.append(row)
            print(f"  {row['scheme']:22s} held-out autoattack {row['autoattack']:.4f}  clean {row['clean']:.4f}  "
                  f"(fit {row['fit_seconds']:.0f} s)", flush=True)
        best = rows[-len(grid) + int(np.argmin(results["rank_test_autoattack"]))]
        print(f"  best by held-out AutoAttack: {best['scheme']}", flush=True)

    names = list(dict.fromkeys(r["scheme"] for r in rows))
    reference = names[0]
    print(f"\ndifference to {reference} in points, per seed:")
    for scheme in names[1:]:
        cells = []
        for key in ("autoattack", "clean"):
            diffs = [100 * (r[key] - ref[key]) for r in rows if r["scheme"] == scheme
                     for ref in rows if ref["scheme"] == reference and ref["seed"] == r["seed"]]
            cells.append(f"{key} " + ", ".join(f"{d:+.1f}" for d in diffs))
        print(f"  {scheme:22s} " + "  ".join(cells))
    with open(os.path.join(args.out, "scheme_search.json"), "w", encoding="utf-8") as f:
        json.dump({"dataset": args.dataset, "eps": eps, "size": args.size, "recipe": args.recipe,
                   "n_fit": args.n_fit, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
