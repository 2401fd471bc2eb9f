"""One model's evaluation as ``robustkd reproduce`` runs it: every evaluation attack and AutoAttack over the
data set's eps grid, with the sanity checks; prints the seconds and the AutoAttack cells.

Run it against another checkout of robustkd (``PYTHONPATH=OTHER``) to time two versions on the same model,
in turn, with ``farm-bench``::

    farm-bench -n 2 --warmup 0 --timeout 1200 \\
        --vs "env PYTHONPATH=OLD python benchmarks/bench_eval_report.py --models OUT/models --model teacher_pgd" \\
        -- python benchmarks/bench_eval_report.py --models OUT/models --model teacher_pgd

The models are those of a ``robustkd reproduce --dataset DATASET --out OUT`` run; ``teacher_<attack>`` names a
teacher of its pool. With ``--n-jobs`` left out, a version whose evaluation takes ``n_jobs`` runs as
``reproduce`` does (every core); an older one runs without it.
"""
import argparse
import glob
import inspect
import os
import time

import joblib

from robustkd import load_split, robustness_report
from robustkd.experiments import ExperimentConfig


def load_model(folder, name):
    if name.startswith("teacher_"):
        pool = joblib.load(glob.glob(os.path.join(folder, "teachers-*.joblib"))[0])["model"]
        return next(t for t in pool.teachers_ if f"teacher_{t.attack}" == name)
    return joblib.load(glob.glob(os.path.join(folder, f"{name}-*.joblib"))[0])["model"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="the models folder of a robustkd reproduce run")
    parser.add_argument("--model", required=True, help="a model's name in that run (e.g. teacher_pgd)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--n-jobs", type=int, default=None, help="n_jobs of the evaluation (default: -1 where taken)")
    args = parser.parse_args()
    cfg = ExperimentConfig(dataset=args.dataset).resolved()
    _, X, _, y = load_split(args.dataset, args.data_home, seed=cfg.seed)
    kwargs = {}
    if "n_jobs" in inspect.signature(robustness_report).parameters:
        kwargs["n_jobs"] = -1 if args.n_jobs is None else args.n_jobs
    net = load_model(args.models, args.model)
    start = time.perf_counter()
    rows = robustness_report(net, X, y, attacks=list(cfg.eval_attacks) + ["autoattack"], eps=list(cfg.eps),
                             random_state=cfg.seed, **kwargs)
    seconds = time.perf_counter() - start
    cells = ", ".join(f"{r['eps']:g}: {r['accuracy']:.4f}" for r in rows if r["attack"] == "autoattack")
    print(f"{args.model}: {seconds:.1f} s ({len(X)} test images, {kwargs or 'no n_jobs'}); AutoAttack {cells}")


if __name__ == "__main__":
    main()
