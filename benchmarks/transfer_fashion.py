"""Robustness that transfers on clean data: students of the full-size Fashion-MNIST teachers, several seeds.

Usage::

    robustkd reproduce --dataset fashion-mnist --data-home ../shared/data --out fmnist_full      # the teachers
    python benchmarks/transfer_fashion.py --teachers 'fmnist_full/models/teachers-*.joblib' \\
        --reference fmnist_full/results.json --seeds 0,1

``--teachers`` takes several files (pools or single teachers trained on the same split, e.g.
``benchmarks/train_fashion_teacher.py``'s), in order; a teacher the ``--reference`` run did not score is scored
here on the same images.

Trains, on all 60,000 training images with the protocol's settings (10 epochs, one-cycle LR peaking at 0.004,
batch 64, T = 4, alpha = 0.9) and the *same* teachers for every row, one student per recipe and seed:

* ``paper``: MTKD-AR as published, clean data, adaptive (confidence) weights, no gradient or feature term
  (``MultiTeacherDistiller(teachers, gradient_matching=0, feature_matching=0, weighter="confidence")``);
* ``default``: robustkd's default recipe (``MultiTeacherDistiller(teachers)``);
* any further ``--recipe name=param:value,...`` given (its parameters override the settings above, e.g.
  ``--recipe default20=max_epochs:20``; ``ema:0.999`` adds a :class:`~robustkd.callbacks.WeightAveraging`
  callback of that decay to the one-cycle schedule).

Each is scored clean on the 10,000 test images, under PGD-10 at eps 0.1 on all of them, and under AutoAttack
(standard) at eps 0.1 on the first ``--aa-n-test`` (500: the protocol's images), and compared with the best
teacher's AutoAttack accuracy from ``--reference`` (the reproduce run's results, same images and seed) or,
without it, measured here.
"""
import argparse
import json
import time

import numpy as np

from _common import load_teachers, parse_params
from robustkd import MultiTeacherDistiller, SmallCNN, robust_score
from robustkd.callbacks import OneCycleLR, WeightAveraging
from robustkd.datasets import load_split

RECIPES = {"paper": dict(gradient_matching=0.0, feature_matching=0.0, weighter="confidence"), "default": {}}


def parse_recipe(text):
    name, _, params = text.partition("=")
    return name, parse_params(filter(None, params.split(",")), ":")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", required=True, nargs="+",
                        help="files (globs) of saved TeacherPools (robustkd reproduce) or single teachers trained "
                             "on the same split, in this order: the students' pool")
    parser.add_argument("--reference", help="that run's results.json, for the teachers' AutoAttack accuracy")
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--recipes", default="paper,default")
    parser.add_argument("--recipe", action="append", default=[], help="name=param:value,... (extra recipe)")
    parser.add_argument("--aa-n-test", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.1)
    args = parser.parse_args()
    recipes = {name: RECIPES[name] for name in args.recipes.split(",") if name}
    recipes.update(parse_recipe(r) for r in args.recipe)
    pool = load_teachers(args.teachers)   # every file's teachers, in order
    X_train, X_test, y_train, y_test = load_split("fashion-mnist", args.data_home, False, 0, None, None)
    Xa, ya = X_test[:args.aa_n_test], y_test[:args.aa_n_test]
    teacher_aa, clean, names = {}, {}, [f"teacher_{t.attack}" for t in pool]
    if args.reference:   # the reproduce run's numbers, for the teachers it scored
        with open(args.reference, encoding="utf-8") as f:
            ref = json.load(f)
        teacher_aa = {r["method"]: r["accuracy"] for r in ref["results"] if r["method"] in names
                      and r["attack"] == "autoattack" and r["eps"] == args.eps}
        clean = {r["method"]: r["accuracy"] for r in ref["results"] if r["method"] in names and r["attack"] == "clean"}
    for name, t in zip(names, pool):   # any other teacher is scored here, on the same images
        if name not in teacher_aa:
            teacher_aa[name] = robust_score(t, Xa, ya, "autoattack", eps=args.eps, random_state=0)
            clean[name] = float(np.mean(t.predict(X_test) == y_test))
    best = max(teacher_aa, key=teacher_aa.get)
    print(f"teachers (AutoAttack at eps={args.eps} on the first {args.aa_n_test} test images): "
          + ", ".join(f"{m} {teacher_aa[m]:.3f} (clean {clean.get(m, float('nan')):.3f})" for m in teacher_aa))
    print(f"{'recipe':<14} {'seed':>4} {'clean':>7} {'pgd':>7} {'AA':>7} {'AA/best':>8} {'fit':>7}  grad_cos")
    rows = []
    for name, params in recipes.items():
        for seed in [int(s) for s in args.seeds.split(",")]:
            start = time.perf_counter()
            kwargs = dict(params)
            callbacks = [OneCycleLR()] + ([WeightAveraging(decay=kwargs.pop("ema"))] if "ema" in kwargs else [])
            settings = dict(module=SmallCNN, module__input_shape=(1, 28, 28), lr=4e-3, max_epochs=10, batch_size=64,
                            train_split=None, verbose=0, random_state=seed, callbacks=callbacks)
            student = MultiTeacherDistiller(pool, **{**settings, **kwargs}).fit(X_train, y_train)
            fit = time.perf_counter() - start
            cos = [b.get("grad_cos") for b in student.history[-1]["batches"] if "grad_cos" in b]
            row = dict(recipe=name, seed=seed, params=params, fit_s=fit,
                       clean=float(np.mean(student.predict(X_test) == y_test)),
                       pgd=robust_score(student, X_test, y_test, "pgd", eps=args.eps, random_state=0),
                       autoattack=robust_score(student, Xa, ya, "autoattack", eps=args.eps, random_state=0),
                       grad_cos=float(np.mean(cos)) if cos else None)
            rows.append(row)
            print(f"{name:<14} {seed:>4} {row['clean']:>7.3f} {row['pgd']:>7.3f} {row['autoattack']:>7.3f} "
                  f"{row['autoattack'] / teacher_aa[best]:>8.1%} {fit:>6.0f}s  "
                  + ("-" if row["grad_cos"] is None else f"{row['grad_cos']:.2f}"), flush=True)
    print(json.dumps({"best_teacher": best, "teacher_autoattack": teacher_aa, "rows": rows}))


if __name__ == "__main__":
    main()
