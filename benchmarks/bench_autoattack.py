"""robustkd's AutoAttack components against the original AutoAttack code (``pyautoattack``), per model and eps.

For each model saved by ``robustkd reproduce`` (``--models OUT/models``), on the same test images:

* the original AutoAttack, version "standard" (APGD-CE, APGD-T, FAB-T, Square 5000 queries), run once per eps;
* robustkd's ``autoattack`` (its own APGD-CE, APGD-T, FAB-T and Square with the same budgets, as a cascade)
  through one ``robustness_report`` over the eps grid (timed against the original);
* for reference, robustkd's ``apgd`` (APGD-CE then APGD-T) and the previous worst case (FGSM, PGD-10,
  BIM-10, MIM-10, CW-L-inf).

It prints accuracy per model and eps and the wall time of each side. Needs ``pip install pyautoattack``.

    python benchmarks/bench_autoattack.py --models robustkd_out/models --dataset digits
"""
import argparse
import glob
import os
import time
import warnings

import joblib
import torch

from robustkd import load_split, robustness_report


def reference_autoattack(module, X, y, eps, seed):
    from pyautoattack import AutoAttack

    attack = AutoAttack(module, norm="Linf", eps=eps, version="standard", seed=seed, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adv, _ = attack.run_standard_evaluation(torch.from_numpy(X), torch.from_numpy(y), batch_size=500)
    with torch.no_grad():
        return float((module(adv).argmax(1).numpy() == y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="the models folder of a robustkd reproduce run")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--eps", default="0.05,0.1,0.2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated model names (default: all)")
    args = parser.parse_args()
    eps = [float(e) for e in args.eps.split(",")]
    _, X, _, y = load_split(args.dataset, args.data_home, seed=args.seed, n_test=args.n_test)
    models = {}
    for path in sorted(glob.glob(os.path.join(args.models, "*.joblib"))):
        model = joblib.load(path)["model"]
        for net in getattr(model, "teachers_", None) if not hasattr(model, "module_") else [model]:
            name = os.path.basename(path).split("-")[0]
            models[f"teacher_{net.attack}" if name == "teachers" else name] = net
    if args.only:
        models = {k: v for k, v in models.items() if k in args.only.split(",")}
    print(f"{len(X)} test images of {args.dataset}; eps {eps}")
    print(f"{'model':18s} {'eps':>5s} {'orig AA':>8s} {'robustkd AA':>11s} {'apgd':>7s} {'pgd':>7s} {'old wc':>7s}")
    t_ref = t_ours = 0.0
    above_ref, above_own = [], []
    for name, net in models.items():
        module = net.module_.eval()
        start = time.perf_counter()
        ref = {e: reference_autoattack(module, X, y, e, args.seed) for e in eps}
        t_ref += time.perf_counter() - start
        start = time.perf_counter()
        ours = robustness_report(net, X, y, attacks=["autoattack"], eps=eps, random_state=args.seed, checks=None)
        t_ours += time.perf_counter() - start
        extra = robustness_report(net, X, y, attacks=["apgd", "fgsm", "pgd", "bim", "mim", "cw_linf"], eps=eps,
                                  random_state=args.seed, checks=None)
        old = robustness_report(net, X, y, attacks=["fgsm", "pgd", "bim", "mim", "cw_linf"], eps=eps,
                                random_state=args.seed, checks=None)
        cell = {(r["attack"], r["eps"]): r["accuracy"] for r in ours + extra}
        old_wc = {r["eps"]: r["accuracy"] for r in old if r["attack"] == "worst_case"}
        for e in eps:
            ours_e = cell[("autoattack", e)]
            print(f"{name:18s} {e:5g} {ref[e]:8.4f} {ours_e:11.4f} {cell[('apgd', e)]:7.4f} {cell[('pgd', e)]:7.4f} "
                  f"{old_wc[e]:7.4f}", flush=True)
            above_ref.append(ours_e - ref[e])
            above_own.append(ours_e - min(cell[("pgd", e)], old_wc[e]))
    print(f"\nrobustkd autoattack minus the original, largest over the cells: {100 * max(above_ref):+.2f} points "
          f"(smallest {100 * min(above_ref):+.2f}); above robustkd's own PGD or old worst case in "
          f"{sum(d > 0 for d in above_own)} of {len(above_own)} cells")
    print(f"wall time: original AutoAttack once per eps {t_ref:.1f} s; robustkd autoattack over the eps grid "
          f"{t_ours:.1f} s (ratio {t_ours / t_ref:.2f})")


if __name__ == "__main__":
    main()
