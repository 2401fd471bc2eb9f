"""Choose a distillation recipe on held-out *training* images: the teachers and students are fitted on part
of a data set's training split and every candidate recipe is scored with AutoAttack on the rest, never on
the test set.

The teachers are the protocol's (``robustkd.experiments.PROTOCOLS[dataset]``: attacks, budget, epochs,
learning rate and schedule), fitted once per seed on the training images that are not held out. Each
recipe is a set of :class:`~robustkd.MultiTeacherDistiller` parameters on top of the library's defaults,
written ``name=param:value,param:value`` (an empty list after ``=`` is the defaults); every student trains
the protocol's epochs with the teachers' schedule. The table gives clean and AutoAttack accuracy on the
held-out images at each ``--eps``, per seed, then each recipe's mean difference to the first one.

    python benchmarks/recipe_selection.py --dataset digits --seeds 0,1 \\
        --recipe gm=feature_matching:0 --recipe fm10=feature_matching:10
    python benchmarks/recipe_selection.py --dataset digits --student 8,16:32 --recipe gm=feature_matching:0 \\
        --recipe default=
"""
import argparse
import time

import numpy as np
from sklearn.model_selection import train_test_split

from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, load_split, robust_score
from robustkd.callbacks import OneCycleSchedule
from robustkd.datasets import DATASETS
from robustkd.experiments import PROTOCOLS


def parse_recipe(text):
    """``"fm0=feature_matching:0,alpha:0.5"`` -> ``("fm0", {"feature_matching": 0.0, "alpha": 0.5})``."""
    name, _, body = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"a recipe is name=param:value,...; got {text!r}")
    params = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        try:
            params[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            params[key] = value
    return name, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--n-train", type=int, default=None, help="a random subset of the training split")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (split, teachers, students, attacks)")
    parser.add_argument("--held-out", type=float, default=0.3, help="share of the training split held out")
    parser.add_argument("--n-valid", type=int, default=1000, help="AutoAttack on at most this many held-out images")
    parser.add_argument("--eps", default=None, help="comma-separated budgets (default: the protocol's)")
    parser.add_argument("--student", default=None, help="student size C1,C2:H (default: the teachers')")
    parser.add_argument("--recipe", type=parse_recipe, action="append", required=True,
                        help="name=param:value,... (repeatable; the first is the reference)")
    args = parser.parse_args()
    protocol = PROTOCOLS[args.dataset]
    eps_list = [float(e) for e in args.eps.split(",")] if args.eps else list(protocol["eps"])
    arch = {}
    if args.student:
        c, _, h = args.student.partition(":")
        arch = dict(module__channels=tuple(int(v) for v in c.split(",")), module__hidden=int(h))
    schedule = (lambda: [OneCycleSchedule()]) if protocol["lr_schedule"] == "onecycle" else (lambda: [])
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        X, _, y, _ = load_split(args.dataset, args.data_home, seed=seed, n_train=args.n_train)
        X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=args.held_out, random_state=seed, stratify=y)
        X_val, y_val = X_val[:args.n_valid], y_val[:args.n_valid]
        common = dict(module__input_shape=tuple(X.shape[1:]), module__n_classes=DATASETS[args.dataset].n_classes,
                      lr=protocol["lr"], max_epochs=protocol["epochs"], batch_size=64, train_split=None, verbose=0)
        start = time.perf_counter()
        template = AdversarialTeacher(SmallCNN, eps=protocol["train_eps"], callbacks=schedule(), **common)
        pool = TeacherPool(template, attacks=list(protocol["attacks"]), random_state=seed).fit(X_fit, y_fit)
        print(f"seed {seed}: {len(X_fit)} training and {len(X_val)} held-out images; teachers "
              f"{list(protocol['attacks'])} at eps {protocol['train_eps']:g} in {time.perf_counter() - start:.0f} s",
              flush=True)
        for name, params in args.recipe:
            start = time.perf_counter()
            student = MultiTeacherDistiller(pool, module=SmallCNN, random_state=seed, callbacks=schedule(),
                                            **{**common, **arch, **params}).fit(X_fit, y_fit)
            fit_seconds = time.perf_counter() - start
            row = dict(seed=seed, recipe=name, fit_seconds=fit_seconds, clean=robust_score(student, X_val, y_val, eps=0))
            for eps in eps_list:
                row[eps] = robust_score(student, X_val, y_val, "autoattack", eps=eps, random_state=seed)
            rows.append(row)
            print(f"  {name:14s} clean {row['clean']:.4f}  " + "  ".join(f"eps {e:g} {row[e]:.4f}" for e in eps_list)
                  + f"  (fit {fit_seconds:.0f} s)", flush=True)
    reference = args.recipe[0][0]
    print(f"\nmean difference to {reference} in points (per seed in brackets):")
    for name, _ in args.recipe[1:]:
        cells = []
        for key in ["clean"] + eps_list:
            diffs = [100 * (r[key] - ref[key]) for r in rows if r["recipe"] == name
                     for ref in rows if ref["recipe"] == reference and ref["seed"] == r["seed"]]
            label = "clean" if key == "clean" else f"eps {key:g}"
            cells.append(f"{label} {np.mean(diffs):+.2f} [{', '.join(f'{d:+.1f}' for d in diffs)}]")
        print(f"  {name:14s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
