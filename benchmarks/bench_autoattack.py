"""AutoAttack three ways on the same models and images, in one process: the original code, robustkd's
``autoattack`` and a cheaper candidate, ``malt``; accuracy per cell, the largest gaps, and the wall times.

For each model saved by ``robustkd reproduce`` (``--models OUT/models``), on the same test images and seeds:

* ``original``: the original AutoAttack code (``pip install pyautoattack``), version "standard" (APGD-CE,
  APGD-T, FAB-T, Square with 5000 queries), once per eps, seeded with the seed;
* ``autoattack``: robustkd's standard suite, one ``robustness_report`` over the eps grid (``robust_score``
  for a single eps), ``n_jobs=--jobs``, ``random_state`` the seed;
* ``malt``: the candidate cheaper evaluation, registered here from public pieces (a
  :class:`~robustkd.attacks.Cascade` of APGD-CE and of APGD-T with ``target_order="linear"``: the
  ``--malt-targets`` classes nearest under the linear approximation, MALT's targeting; ``--malt-restarts``
  restarts each), run the same way. robustkd offers it by name only once it is never more than 0.3 points
  above ``autoattack`` on every robust model of the ``reproduce`` runs.

It prints each cell, then per seed and over all the largest gap of ``malt`` above ``autoattack`` and above the
original, of ``autoattack`` above the original, and each side's wall time with the ratios. With several
``--seeds`` the accuracies are also given as means over the seeds.

    python benchmarks/bench_autoattack.py --models robustkd_out/models --dataset digits
    python benchmarks/bench_autoattack.py --models robustkd_out/models --only teacher_pgd --eps 0.1 --seeds 0,1,2
    python benchmarks/bench_autoattack.py --models robustkd_out/models --results robustkd_out/results.json \
        --skip-original

With ``--results``, ``autoattack``'s cells are read from that run's ``results.json`` (its test images, seed
and eps; the run must have evaluated every test image with AutoAttack) instead of being computed again, and
its time is not measured.
"""
import json
import argparse
import glob
import os
import time
import warnings

import joblib
import numpy as np
import torch

from robustkd import load_split, register_attack, robust_score, robustness_report
from robustkd.attacks import APGD, Cascade

SIDES = ("original", "autoattack", "malt")


def original(module, X, y, eps, seed):
    from pyautoattack import AutoAttack

    attack = AutoAttack(module, norm="Linf", eps=eps, version="standard", seed=seed, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adv, _ = attack.run_standard_evaluation(torch.from_numpy(X), torch.from_numpy(y), batch_size=500)
    with torch.no_grad():
        return float((module(adv).argmax(1).numpy() == y).mean())


def ours(net, X, y, attack, eps, seed, jobs):
    if len(eps) == 1:
        return {eps[0]: robust_score(net, X, y, attack, eps=eps[0], random_state=seed, n_jobs=jobs)}
    rows = robustness_report(net, X, y, attacks=[attack], eps=eps, random_state=seed, checks=None, n_jobs=jobs)
    return {r["eps"]: r["accuracy"] for r in rows if r["attack"] == attack}


def register_malt(targets, restarts):
    def build(model, eps, clip_min, clip_max, params):
        common = dict(norm="linf", n_iter=params["n_iter"], n_restarts=restarts, clip_min=clip_min, clip_max=clip_max)
        return Cascade(model, [("apgd_ce", APGD(model, eps, loss="ce", **common)),
                               ("apgd_t", APGD(model, eps, loss="dlr-targeted", n_target_classes=targets,
                                               target_order="linear", **common))])

    register_attack("malt", build, norm="linf", eps=0.1, defaults={"n_iter": 100}, overwrite=True,
                    description=f"APGD-CE, then APGD-T on the {targets} nearest classes (benchmark candidate)")


def load_models(folder, only):
    models = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.joblib"))):
        model = joblib.load(path)["model"]
        name = os.path.basename(path).split("-")[0]
        for net in model.teachers_ if name == "teachers" else [model]:
            models[f"teacher_{net.attack}" if name == "teachers" else name] = net
    return {k: v for k, v in models.items() if not only or k in only}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="the models folder of a robustkd reproduce run")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--n-test", type=int, default=None, help="the first N test images (default: all)")
    parser.add_argument("--eps", default="0.05,0.1,0.2,0.3")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of the attacks")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (the run's)")
    parser.add_argument("--jobs", type=int, default=-1, help="n_jobs of robustkd's evaluation")
    parser.add_argument("--only", default=None, help="comma-separated model names (default: all)")
    parser.add_argument("--skip-original", action="store_true", help="robustkd's two evaluations only")
    parser.add_argument("--results", default=None, help="take autoattack's cells from this results.json")
    parser.add_argument("--malt-targets", type=int, default=3, help="APGD-T's target classes in malt")
    parser.add_argument("--malt-restarts", type=int, default=1, help="restarts of each attack in malt")
    args = parser.parse_args()
    eps = [float(e) for e in args.eps.split(",")]
    register_malt(args.malt_targets, args.malt_restarts)
    seeds = [int(s) for s in args.seeds.split(",")]
    sides = [s for s in SIDES if not (args.skip_original and s == "original")]
    _, X, _, y = load_split(args.dataset, args.data_home, seed=args.split_seed)
    if args.n_test:
        X, y = X[:args.n_test], y[:args.n_test]
    models = load_models(args.models, args.only.split(",") if args.only else None)
    run = None
    if args.results:
        with open(args.results, encoding="utf-8") as f:
            saved = json.load(f)
        if saved["config"]["seed"] != args.split_seed or seeds != [saved["config"]["seed"]]:
            parser.error(f"--results comes from seed {saved['config']['seed']}: give --seeds and --split-seed the same")
        run = {(r["method"], r["eps"]): r["accuracy"] for r in saved["results"]
               if r["attack"] == "autoattack" and r["n_samples"] == len(X)}
    print(f"{len(X)} test images of {args.dataset}; eps {eps}; seeds {seeds}; torch threads "
          f"{torch.get_num_threads()}, robustkd n_jobs={args.jobs}")
    print(f"{'model':22s} {'seed':>4s} {'eps':>5s} " + " ".join(f"{s:>10s}" for s in sides))
    seconds = {s: 0.0 for s in sides}
    cells = {}   # (model, seed, eps) -> {side: accuracy}
    for name, net in models.items():
        module = net.module_.eval()
        for seed in seeds:
            got = {}
            for side in sides:
                start = time.perf_counter()
                if side == "autoattack" and run is not None:
                    got[side] = {e: run[(name, e)] for e in eps}
                    continue
                if side == "original":
                    got[side] = {e: original(module, X, y, e, seed) for e in eps}
                else:
                    got[side] = ours(net, X, y, side, eps, seed, args.jobs)
                seconds[side] += time.perf_counter() - start
            for e in eps:
                cells[(name, seed, e)] = {side: got[side][e] for side in sides}
                print(f"{name:22s} {seed:4d} {e:5g} " + " ".join(f"{got[s][e]:10.4f}" for s in sides), flush=True)
    print()
    pairs = [("malt", "autoattack"), ("malt", "original"), ("autoattack", "original")]
    for a, b in pairs:
        if a in sides and b in sides:
            gaps = [(c[a] - c[b], key) for key, c in cells.items()]
            worst = max(gaps)
            print(f"{a} minus {b}: largest {100 * worst[0]:+.2f} points ({worst[1][0]}, seed {worst[1][1]}, eps "
                  f"{worst[1][2]:g}), smallest {100 * min(gaps)[0]:+.2f}, mean {100 * np.mean([g for g, _ in gaps]):+.3f}")
    if len(seeds) > 1:
        for name in models:
            for e in eps:
                means = {s: np.mean([cells[(name, seed, e)][s] for seed in seeds]) for s in sides}
                print(f"mean over seeds {name} eps {e:g}: " + ", ".join(f"{s} {means[s]:.4f}" for s in sides))
    if run is not None:
        seconds.pop("autoattack")
    print("wall time: " + ", ".join(f"{s} {seconds[s]:.1f} s" for s in seconds))
    for a, b in (("autoattack", "original"), ("malt", "original"), ("malt", "autoattack")):
        if a in seconds and b in seconds and seconds[b]:
            print(f"time ratio {a} / {b}: {seconds[a] / seconds[b]:.3f}")


if __name__ == "__main__":
    main()
