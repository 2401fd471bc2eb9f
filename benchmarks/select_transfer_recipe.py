"""Choose the clean-data student's recipe on held-out TRAINING images (never the test set).

Usage::

    python benchmarks/select_transfer_recipe.py --teachers 'fmnist_full/models/teachers-*.joblib' \\
        --configs '[{"lam": 0}, {"lam": 2}, {"lam": 2, "scheme": "robust_precision", "tau": 0.1, "eps_scale": 2}]'

Teachers: a TeacherPool saved by ``robustkd reproduce --dataset fashion-mnist`` (the full-size protocol), and
any further saved teachers trained on the same split (``--teachers POOL TEACHER ...``, in that order). Each
config trains a student on ``--n-train`` training images (drawn from those the teachers trained on; one-cycle LR
peaking at ``lr``, 4e-3 by default) and scores it clean and under PGD-10 at eps 0.1 on the 1,000 training images
the protocol held out from the teachers for their robust model selection. Config keys: ``lam``
(``gradient_matching``), ``scheme``/``tau``/``eps_scale`` (the weighter; ``uniform`` by default),
``teachers`` (indices into the pool), ``lr``, ``sched`` (``onecycle`` or ``constant``), ``seed``, and
``default: 1`` for the library's default weighter. One JSON line per config: clean and PGD accuracy, fit seconds,
and the mean cosine of the last epoch's gradient term.
"""
import argparse
import glob
import json
import time

import joblib
import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from robustkd import MultiTeacherDistiller, SmallCNN, robust_score
from robustkd.callbacks import OneCycleLR
from robustkd.datasets import load_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", required=True, nargs="+",
                        help="files (globs) of saved TeacherPools or single teachers, in this order")
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--configs", required=True, help="a JSON list of configs")
    args = parser.parse_args()
    X, _, y, _ = load_split("fashion-mnist", args.data_home, False, 0, None, None)
    pool = []   # the teachers of every file, in order: a TeacherPool's teachers_, or one teacher
    for pattern in args.teachers:
        for path in sorted(glob.glob(pattern)):
            saved = joblib.load(path)
            model = saved["model"] if isinstance(saved, dict) else saved
            pool.extend(getattr(model, "teachers_", [model]))
    if not pool:
        raise SystemExit(f"no teacher files match {args.teachers}")
    train, valid = next(StratifiedShuffleSplit(test_size=1000, random_state=0).split(X, y))  # the protocol's
    subset = np.random.RandomState(0).choice(train, args.n_train, replace=False)
    Xv, yv = X[valid], y[valid]
    for c in json.loads(args.configs):
        start = time.perf_counter()
        teachers = [pool[i] for i in c.get("teachers", range(len(pool)))]
        weights = {} if c.get("default") else dict(weighter=c.get("scheme", "uniform"), weighter__tau=c.get("tau", 1.0),
                                                   weighter__eps_scale=c.get("eps_scale", 1.0))
        student = MultiTeacherDistiller(
            teachers, module=SmallCNN, module__input_shape=(1, 28, 28), gradient_matching=c["lam"], lr=c.get("lr", 4e-3),
            max_epochs=args.epochs, batch_size=64, train_split=None, verbose=0, random_state=c.get("seed", 0),
            callbacks=[OneCycleLR()] if c.get("sched", "onecycle") == "onecycle" else [], **weights).fit(X[subset],
                                                                                                          y[subset])
        fit = time.perf_counter() - start
        cos = [b["grad_cos"] for b in student.history[-1]["batches"] if "grad_cos" in b]
        print(json.dumps(dict(c, clean=float(np.mean(student.predict(Xv) == yv)),
                              pgd=robust_score(student, Xv, yv, "pgd", eps=0.1, random_state=0), fit_s=round(fit, 1),
                              cos=round(float(np.mean(cos)), 3) if cos else None)), flush=True)


if __name__ == "__main__":
    main()
