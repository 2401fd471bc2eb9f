"""Wall time of TeacherPool with n_jobs=1 against n_jobs=N on the same work.

Usage::

    python benchmarks/bench_teacher_pool.py [--n-jobs 2] [--epochs 10]

Fits three SmallCNN teachers (FGSM, PGD, MIM at eps=0.2) on the digits training
split, once serially and once with joblib workers, and prints both wall times and
the speed-up. With n_jobs workers, joblib's loky backend limits torch in each worker
to cores / n_jobs threads, so the comparison is "one process using every core" against
"one process per teacher".
"""
import argparse
import time

import torch
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from robustkd import AdversarialTeacher, SmallCNN, TeacherPool, load_digits_images


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    X, y = load_digits_images()
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), eps=0.2, max_epochs=args.epochs,
                                  batch_size=64, train_split=None, verbose=0)
    pool = TeacherPool(template, attacks=["fgsm", "pgd", "mim"], random_state=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 3 teachers x {args.epochs} epochs "
          f"on {len(X_train)} digits")
    times = {}
    for n_jobs in (1, args.n_jobs):
        start = time.perf_counter()
        clone(pool).set_params(n_jobs=n_jobs).fit(X_train, y_train)
        times[n_jobs] = time.perf_counter() - start
        print(f"n_jobs={n_jobs}: {times[n_jobs]:6.1f} s")
    print(f"speed-up n_jobs={args.n_jobs} vs 1: {times[1] / times[args.n_jobs]:.2f}x")


if __name__ == "__main__":
    main()
