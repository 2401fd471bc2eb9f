"""Train one full-size Fashion-MNIST teacher with the settings of ``robustkd reproduce``'s full-size protocol.

Usage::

    python benchmarks/train_fashion_teacher.py --attack pgd --out fmnist_full/teacher_pgd.joblib

The teacher is trained as the protocol trains its pool (all 60,000 training images, the data set's split with
seed 0, 10 epochs, batch 64, one-cycle LR peaking at 4e-3, eps 0.1, the most robust epoch on the 1,000 training
images held out by ``StratifiedShuffleSplit(test_size=1000, random_state=0)``), for an attack the run's pool
did not have (e.g. PGD-10, ``--attack pgd``; TRADES, ``--objective trades``; L2 PGD, ``--attack pgd_l2 --eps
1.5``). Its file (``{"model": teacher}``, as the runner saves) joins the pool in
``benchmarks/select_transfer_recipe.py --teachers POOL FILE`` and ``benchmarks/transfer_fashion.py --teachers
POOL FILE``. Prints the fit time and the epoch kept.
"""
import argparse
import logging
import time

import joblib
from sklearn.model_selection import StratifiedShuffleSplit
from skorch.dataset import ValidSplit

from robustkd import SmallCNN
from robustkd.callbacks import EpochLog, OneCycleLR, RobustEarlyStopping
from robustkd.datasets import load_split
from robustkd.training import AdversarialTeacher


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", default="pgd")
    parser.add_argument("--objective", default="madry", help="madry or trades")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="where to save the teacher (joblib)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    X, _, y, _ = load_split("fashion-mnist", args.data_home, False, 0, None, None)
    teacher = AdversarialTeacher(
        SmallCNN, attack=args.attack, objective=args.objective, eps=args.eps, module__input_shape=(1, 28, 28),
        module__n_classes=10, lr=4e-3, max_epochs=10, batch_size=64, verbose=0, random_state=args.seed,
        train_split=ValidSplit(StratifiedShuffleSplit(test_size=1000, random_state=0), stratified=True),
        callbacks=[EpochLog(f"teacher_{args.attack}"), OneCycleLR(),
                   RobustEarlyStopping(max_samples=1000, random_state=0)])
    start = time.perf_counter()
    teacher.fit(X, y)
    fit = time.perf_counter() - start
    robust = teacher.history[:, "valid_robust_acc"]
    best = max(range(len(robust)), key=robust.__getitem__)
    print(f"fit {fit:.0f} s; epoch kept {best + 1} of {len(robust)} (held-out PGD-10 {robust[best]:.3f})", flush=True)
    joblib.dump({"model": teacher}, args.out)


if __name__ == "__main__":
    main()
