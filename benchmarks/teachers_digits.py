"""Clean and robust accuracy of standard and adversarially trained SmallCNNs on digits.

Usage::

    python benchmarks/teachers_digits.py [--epochs 15] [--eps 0.2]

Same split and seeds as the test suite (70/30 stratified, random_state=0). Prints,
per training attack and adv_ratio, fit time, clean accuracy, and accuracy under
PGD-10 and FGSM at --eps.
"""
import argparse
import time

from sklearn.model_selection import train_test_split

from robustkd import AdversarialTeacher, SmallCNN, load_digits_images, robust_score


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--eps", type=float, default=0.2)
    args = parser.parse_args()
    X, y = load_digits_images()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    print(f"{'training':<12} {'adv_ratio':>9} {'fit s':>6} {'clean':>6} {'PGD-10':>7} {'FGSM':>6}   (eps={args.eps})")
    for attack, ratio in [(None, 1.0), ("fgsm", 1.0), ("fgsm", 0.5), ("pgd", 1.0), ("pgd", 0.5), ("mim", 1.0)]:
        start = time.perf_counter()
        net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack=attack, eps=args.eps,
                                 adv_ratio=ratio, max_epochs=args.epochs, batch_size=64, train_split=None,
                                 verbose=0, random_state=0).fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        pgd = robust_score(net, X_test, y_test, "pgd", eps=args.eps, nb_iter=10, random_state=0)
        fgsm = robust_score(net, X_test, y_test, "fgsm", eps=args.eps)
        print(f"{attack or 'standard':<12} {ratio:>9} {fit_s:>6.1f} {net.score(X_test, y_test):>6.3f} "
              f"{pgd:>7.3f} {fgsm:>6.3f}")


if __name__ == "__main__":
    main()
