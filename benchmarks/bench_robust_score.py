"""robust_score against a bare advertorch loop: 10,000 Fashion-MNIST test images, PGD-10, CPU.

Usage::

    python benchmarks/bench_robust_score.py --data-home ../shared/data [--eps 0.1] [--repeats 2]

Trains a SmallCNN for one epoch on the training set (so the attack runs on a
realistic model), then times, over the same batches and the same attack
configuration, (a) a bare loop of advertorch's ``LinfPGDAttack.perturb`` plus a
forward pass, and (b) ``robustkd.robust_score``. Prints both wall times, the ratio,
and both robust accuracies. Each timing is the best of ``--repeats`` runs.
"""
import argparse
import time

import torch
from skorch import NeuralNetClassifier

from robustkd import SmallCNN, load_fashion_mnist, robust_score  # importing robustkd lets advertorch import
from advertorch.attacks import LinfPGDAttack  # noqa: E402


def bare_loop(module, X, y, eps, batch_size):
    attack = LinfPGDAttack(
        module, eps=eps, nb_iter=10, eps_iter=2.5 * eps / 10, rand_init=True, clip_min=0.0, clip_max=1.0)
    module.eval()
    correct = 0
    for start in range(0, len(X), batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        x_adv = attack.perturb(xb, yb)
        with torch.no_grad():
            correct += (module(x_adv).argmax(1) == yb).sum().item()
    return correct / len(X)


def best_of(repeats, fn):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    X_train, y_train = load_fashion_mnist(args.data_home, train=True)
    X_test, y_test = load_fashion_mnist(args.data_home, train=False)
    net = NeuralNetClassifier(SmallCNN, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
                              max_epochs=1, batch_size=128, train_split=None, verbose=0).fit(X_train, y_train)
    module = net.module_
    X, y = torch.from_numpy(X_test), torch.from_numpy(y_test)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(X)} images, PGD-10 eps={args.eps}")
    print(f"clean accuracy: {net.score(X_test, y_test):.4f}")
    t_bare, acc_bare = best_of(args.repeats, lambda: bare_loop(module, X, y, args.eps, args.batch_size))
    t_ours, acc_ours = best_of(args.repeats, lambda: robust_score(module, X, y, "pgd", eps=args.eps,
                                                                  batch_size=args.batch_size))
    print(f"bare advertorch loop: {t_bare:7.2f} s   robust accuracy {acc_bare:.4f}")
    print(f"robust_score:         {t_ours:7.2f} s   robust accuracy {acc_ours:.4f}")
    print(f"ratio robust_score / bare: {t_ours / t_bare:.3f}")


if __name__ == "__main__":
    main()
