"""Every weighting scheme on one pool of teachers, scored on the union of the teachers' threat models.

Usage::

    robustkd reproduce --dataset fashion-mnist --data-home ../shared/data --teachers fgsm_rs,nfgsm,pgd_l2:1.5 \\
        --n-train 10000 --n-test 1000 --eps 0.1 --eval-attacks pgd --out fm_mixed          # teachers and baselines
    python benchmarks/mixed_pool.py --run fm_mixed --data-home ../shared/data                # one student per scheme

``robustkd reproduce`` trains the pool, the single-teacher, uniform and default students and scores them; this
script adds, on the *same* teachers, split and settings (read from the run's ``results.json``), one student per
weighting scheme (``--schemes``, all registered ones by default; an entry ``label=scheme/param=value/...`` sets
the weighter's parameters, e.g. ``rp_union=robust_precision/tau=0.1/eps_scale=2/threat_models=union``) with the
gradient term of ``--gradient-matching``
(the run's, the distiller's default, unless given; 0: the paper's plain loss), scores each exactly as the run
scored its models (the same evaluation function, attacks, budgets and images, the union row included), and
prints one table: the run's students and teachers, then the schemes, with the union column first. Each scheme's
evaluation is saved under ``RUN/evaluations`` and reused by a re-run.
"""
import argparse
import glob
import json
import os
import time

import joblib

from _common import parse_params
from robustkd import MultiTeacherDistiller, SmallCNN
from robustkd.callbacks import OneCycleLR
from robustkd.datasets import load_split
from robustkd.evaluation import robustness_report
from robustkd.experiments import ExperimentConfig
from robustkd.experiments._evaluation import _key, _report, with_union
from robustkd.weighting import available_schemes


def parse_scheme(text):
    """``"entropy"`` -> ``("entropy", "entropy", {})``; ``"rp=robust_precision/tau=0.1"`` ->
    ``("rp", "robust_precision", {"tau": 0.1})``."""
    head, *items = text.split("/")
    label, _, scheme = head.rpartition("=")
    return label or scheme, scheme, parse_params(items, "=")


def cell(rows, attack, eps):
    hit = [r["accuracy"] for r in rows if r["attack"] == attack and r["eps"] == eps]
    return hit[0] if hit else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the --out folder of a finished robustkd reproduce run")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--schemes", default=None, help="comma-separated (default: every registered scheme)")
    parser.add_argument("--gradient-matching", type=float, default=None)
    args = parser.parse_args()
    with open(os.path.join(args.run, "results.json"), encoding="utf-8") as f:
        summary = json.load(f)
    config = dict(summary["config"], out=args.run)
    if args.data_home:
        config["data_home"] = args.data_home
    cfg = ExperimentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}).check()
    lam = cfg.gradient_matching if args.gradient_matching is None else args.gradient_matching
    schemes = args.schemes.split(",") if args.schemes else list(available_schemes())
    X_train, X_test, y_train, y_test = load_split(cfg.dataset, cfg.data_home, False, cfg.seed, cfg.n_train,
                                                  cfg.n_test)
    pools = glob.glob(os.path.join(args.run, "models", "teachers-*.joblib"))
    if len(pools) != 1:
        raise SystemExit(f"expected one teachers-*.joblib in {args.run}/models, found {pools}")
    pool = joblib.load(pools[0])["model"]
    results = {m: [r for r in summary["results"] if r["method"] == m] for m in summary["methods"]}
    fit_s = {m: summary["timings"].get(m) for m in summary["methods"]}
    for text in schemes:
        label, scheme, params = parse_scheme(text)
        name = f"scheme_{label}" + (f"_gm{lam:g}" if lam else "")
        settings = {k: v for k, v in config.items() if k not in ("out", "data_home")}   # not what the student sees
        extra = {"weighter_params": params} if params else {}   # plain schemes keep their earlier keys
        key = _key(pool=os.path.abspath(pools[0]), mtime=os.stat(pools[0]).st_mtime_ns, lam=lam, cfg=settings,
                   **extra)
        path = os.path.join(args.run, "evaluations", f"{name}-{key}.json")   # a re-trained pool is evaluated again
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        else:
            start = time.perf_counter()
            student = MultiTeacherDistiller(
                pool, module=SmallCNN, module__input_shape=tuple(X_train.shape[1:]), lr=cfg.lr, max_epochs=cfg.epochs,
                batch_size=cfg.batch_size, train_split=None, verbose=0, device=cfg.device, weighter=scheme,
                **{f"weighter__{k}": v for k, v in params.items()}, gradient_matching=lam, feature_matching=0.0,
                temperature=cfg.temperature, alpha=cfg.alpha, random_state=cfg.seed,
                callbacks=[OneCycleLR()] if cfg.lr_schedule == "onecycle" else []).fit(X_train, y_train)
            saved = dict(fit_s=time.perf_counter() - start,
                         rows=_report(robustness_report, student, X_test, y_test, cfg),
                         mean_weights=[float(w) for w in student.mean_teacher_weights()[-1]])
            with open(path, "w", encoding="utf-8") as f:
                json.dump(saved, f)
        results[name] = with_union(saved["rows"], cfg)
        fit_s[name] = saved["fit_s"]
        print(f"{name}: mean teacher weights (last epoch) {[round(w, 2) for w in saved['mean_weights']]}", flush=True)
    union = summary["union"]
    print(f"\n{cfg.dataset}: teachers {', '.join(summary['teacher_names'])}, seed {cfg.seed}, "
          f"{summary['split']['n_train']} training / {summary['split']['n_test']} test images; union = "
          + " + ".join(f"{a}@{e:g}" for a, e in union))
    eps = cfg.eps[len(cfg.eps) // 2] if len(cfg.eps) > 1 else cfg.eps[0]
    print(f"{'model':<26} {'union':>7} {'clean':>7} {'AA@' + format(eps, 'g'):>8} {'fit s':>7}")
    for name, rows in results.items():
        print(f"{name:<26} {cell(rows, 'union', None):>7.3f} {cell(rows, 'clean', 0.0):>7.3f} "
              f"{cell(rows, 'autoattack', eps):>8.3f} {fit_s.get(name) or float('nan'):>7.0f}")


if __name__ == "__main__":
    main()
