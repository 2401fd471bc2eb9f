"""Fast adversarial training against PGD-10 training: robust accuracy and training time, same data and seeds.

Trains one SmallCNN teacher per training attack (``pgd``: 10 steps; ``fgsm_rs`` and ``nfgsm``: one step;
``fgsm`` without a random start, for reference) on the same training images with the same seed, then
scores each clean, under PGD-10 and under AutoAttack (robustkd's ``autoattack``, on the first
``--aa-n-test`` test images; the worst case is over both attacks on those images) at ``--eps``.

    python benchmarks/fast_teachers.py --dataset digits
    python benchmarks/fast_teachers.py --dataset fashion-mnist --data-home ../shared/data --n-train 10000 \\
        --n-test 1000 --epochs 5 --aa-n-test 200
"""
import argparse
import time

from robustkd import AdversarialTeacher, SmallCNN, load_split, robustness_report
from robustkd.datasets import DATASETS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--aa-n-test", type=int, default=None, help="AutoAttack on the first N test images")
    parser.add_argument("--attacks", default="pgd,fgsm_rs,nfgsm,fgsm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X_train, X_test, y_train, y_test = load_split(args.dataset, args.data_home, seed=args.seed, n_train=args.n_train,
                                                  n_test=args.n_test)
    n_aa = args.aa_n_test or len(X_test)
    print(f"{args.dataset}: {len(X_train)} training / {len(X_test)} test images ({n_aa} for AutoAttack), "
          f"{args.epochs} epochs, training and evaluation at eps={args.eps}, seed {args.seed}")
    rows = []
    for attack in args.attacks.split(","):
        net = AdversarialTeacher(SmallCNN, attack=attack, eps=args.eps, module__input_shape=X_train.shape[1:],
                                 module__n_classes=DATASETS[args.dataset].n_classes, max_epochs=args.epochs,
                                 batch_size=64, train_split=None, verbose=0, random_state=args.seed)
        start = time.perf_counter()
        net.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        pgd = robustness_report(net, X_test, y_test, attacks=["pgd"], eps=[args.eps], random_state=args.seed,
                                checks=None)
        aa = robustness_report(net, X_test[:n_aa], y_test[:n_aa], attacks=["pgd", "autoattack"], eps=[args.eps],
                               random_state=args.seed, checks=None)
        cell = {r["attack"]: r["accuracy"] for r in pgd}
        cell.update({"aa_" + r["attack"]: r["accuracy"] for r in aa})
        rows.append((attack, fit_s, cell))
        print(f"  {attack}: fit {fit_s:.1f}s", flush=True)
    base = {name: (fit_s, cell) for name, fit_s, cell in rows}.get("pgd")
    print(f"\n{'training':9s} {'fit s':>7s} {'x PGD':>6s} {'clean':>6s} {'PGD-10':>7s} {'AA':>6s} {'worst':>6s} "
          f"{'worst / PGD teacher':>20s}")
    for attack, fit_s, cell in rows:
        ratio_t = fit_s / base[0] if base else float("nan")
        base_wc = base[1]["aa_worst_case"] if base else 0.0
        ratio_r = cell["aa_worst_case"] / base_wc if base_wc else float("nan")
        print(f"{attack:9s} {fit_s:7.1f} {ratio_t:6.2f} {cell['clean']:6.3f} {cell['pgd']:7.3f} "
              f"{cell['aa_autoattack']:6.3f} {cell['aa_worst_case']:6.3f} {ratio_r:20.2f}")


if __name__ == "__main__":
    main()
