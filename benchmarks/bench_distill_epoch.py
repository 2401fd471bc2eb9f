"""Cost of one distillation epoch (3 teachers), with and without input-gradient matching, against one plain
training epoch of the student.

Usage::

    python benchmarks/bench_distill_epoch.py --data-home ../shared/data [--n-train 20000] [--epochs 3]

On Fashion-MNIST training images (digits if --data-home has no Fashion-MNIST), times
(a) a plain skorch NeuralNetClassifier epoch of SmallCNN, (b) a MultiTeacherDistiller
epoch with three SmallCNN teachers and the teacher-output cache, and (c) the same
without the cache, (d) the cached distiller with ``gradient_matching=5`` (double
backpropagation through the student; the teachers' gradients cached) and (e) the same without
the cache, and (f) the default recipe (``gradient_matching=2`` and ``feature_matching=10``: the teachers run
on every batch for their features). Epoch times are skorch's per-epoch ``dur`` (median over --epochs); the one-off cost
of filling the cache (a forward pass of each teacher over the data, and a backward pass for the
gradients) is printed separately, as "outside epochs". The default recipe runs twice: with the teachers'
features cached once per fit (``cache_teacher_features=True``, the default) and with the teachers run on every
batch. Last, an FGSM-RS adversarial training epoch of the student (``AdversarialTeacher(attack="fgsm_rs")``),
the cheapest direct way to a robust model of that size. ``--student C1,C2:H`` makes the student a SmallCNN of
those channels and hidden width (the teachers keep the default 32,64:128).
"""
import argparse
import statistics
import time

import torch
from skorch import NeuralNetClassifier

from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, load_digits_images, load_fashion_mnist


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--student", default=None, help="the student's size C1,C2:H (default: the teachers')")
    args = parser.parse_args()
    try:
        X, y = load_fashion_mnist(args.data_home, train=True)
        name = "Fashion-MNIST"
    except FileNotFoundError:
        X, y = load_digits_images()
        name = "digits"
    X, y = X[:args.n_train], y[:args.n_train]
    shape = X.shape[1:]
    torch.manual_seed(0)
    teachers = [SmallCNN(input_shape=shape).eval() for _ in range(3)]
    common = dict(max_epochs=args.epochs, batch_size=128, train_split=None, verbose=0)
    if args.student:
        c1, c2, hidden = (int(t) for t in args.student.replace(":", ",").split(","))
        common.update(module__channels=(c1, c2), module__hidden=hidden)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(X)} {name} images, "
          f"batch 128, median of {args.epochs} epochs; student {args.student or '32,64:128 (the teachers)'}")

    def run(label, net):
        start = time.perf_counter()
        net.fit(X, y)
        total = time.perf_counter() - start
        durs = net.history[:, "dur"]
        epoch = statistics.median(durs)
        print(f"{label:<34} epoch {epoch:6.2f} s   (fit {total:6.2f} s, outside epochs {total - sum(durs):5.2f} s)")
        return epoch

    plain = run("plain student (NeuralNetClassifier)",
                NeuralNetClassifier(SmallCNN, module__input_shape=shape, criterion=torch.nn.CrossEntropyLoss,
                                    optimizer=torch.optim.Adam, lr=1e-3, **common))
    paper = dict(gradient_matching=0.0, feature_matching=0.0)   # the paper's loss
    cached = run("distiller, 3 teachers, cache",
                 MultiTeacherDistiller(teachers, module=SmallCNN, module__input_shape=shape, **paper, **common))
    uncached = run("distiller, 3 teachers, no cache",
                   MultiTeacherDistiller(teachers, module=SmallCNN, module__input_shape=shape,
                                         cache_teacher_outputs=False, **paper, **common))
    matched = run("distiller + gradient matching, cache",
                  MultiTeacherDistiller(teachers, module=SmallCNN, module__input_shape=shape, gradient_matching=5.0,
                                        feature_matching=0.0, **common))
    matched_uncached = run("distiller + gradient matching, no cache",
                           MultiTeacherDistiller(teachers, module=SmallCNN, module__input_shape=shape,
                                                 gradient_matching=5.0, feature_matching=0.0,
                                                 cache_teacher_outputs=False, **common))
    default = run("distiller, default (gradient + feature matching)",
                  MultiTeacherDistiller(teachers, module=SmallCNN, module__input_shape=shape, **common))
    default_uncached = run("default, features not cached",
                           MultiTeacherDistiller(teachers, module=SmallCNN, module__input_shape=shape,
                                                 cache_teacher_features=False, **common))
    fgsm_rs = run("FGSM-RS adversarial training",
                  AdversarialTeacher(SmallCNN, module__input_shape=shape, attack="fgsm_rs", eps=0.1, **common))
    print(f"ratio cached / plain:   {cached / plain:.3f}")
    print(f"ratio uncached / plain: {uncached / plain:.3f}")
    print(f"ratio gradient matching / plain distillation (both cached):   {matched / cached:.3f}")
    print(f"ratio gradient matching / plain distillation (neither cached): {matched_uncached / uncached:.3f}")
    print(f"ratio default recipe / plain distillation (both cached):     {default / cached:.3f}")
    print(f"ratio default recipe, features cached / not cached:          {default / default_uncached:.3f}")
    print(f"ratio default recipe / FGSM-RS training of the student:      {default / fgsm_rs:.3f}")


if __name__ == "__main__":
    main()
