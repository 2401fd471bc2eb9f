"""Choose the clean-data student's recipe on held-out TRAINING images (never the test set).

Usage::

    python benchmarks/select_transfer_recipe.py --teachers 'fmnist_full/models/teachers-*.joblib' \\
        --configs '[{"lam": 0}, {"lam": 2}, {"lam": 2, "scheme": "robust_precision", "tau": 0.1, "eps_scale": 2}]'

Teachers: a TeacherPool saved by ``robustkd reproduce --dataset fashion-mnist`` (the full-size protocol), and
any further saved teachers trained on the same split (``--teachers POOL TEACHER ...``, in that order). Each
config trains a student on ``--n-train`` training images (drawn from those the teachers trained on; one-cycle LR
peaking at ``lr``, 4e-3 by default) and scores it clean and under PGD-10 at eps 0.1 on the 1,000 training images
the protocol held out from the teachers for their robust model selection. Config keys: ``lam``
(``gradient_matching``), ``scheme``/``tau``/``eps_scale`` (the weighter; ``uniform`` by default),
``teachers`` (indices into the pool), ``lr``, ``epochs`` (default ``--epochs``), ``sched`` (``onecycle`` or
``constant``), ``seed``,
``default: 1`` for the library's default weighter, ``mu`` (``feature_matching``) and ``layers``
(``feature_layers``, default ``"auto"``), ``alpha`` and ``T`` (the distillation term's weight and temperature,
0.9 and 4 by default), and ``penalty`` (a control, not a library feature: adds
``penalty * eps * mean_i ||grad_x CE(s(x_i), y_i)||_1``, the first-order term of the student's L-inf robust
loss (Simon-Gabriel et al., ICML 2019), i.e. input-gradient regularisation that needs no teacher; with ``lam``
~0 it is the only gradient term); ``ema`` (a list of decays: the same fit also tracks a
:class:`~robustkd.callbacks.WeightAveraging` average per decay, and each average is scored beside the trained
weights, as ``ema_<decay>``: a paired comparison on one training run); ``features: "uniform"`` (the feature
term weighs every teacher alike, whatever the logits' weights; a benchmark variant, not a library option);
``flip: 1`` (the student also trains on every training image mirrored left to right: clean images, twice as
many; the teachers' outputs on them are cached like the others').
One JSON line per config: clean accuracy, PGD-10 accuracy, APGD (APGD-CE then
APGD-T, the cheaper part of AutoAttack) on the first ``--apgd-n-valid`` held-out images, fit seconds, and the
mean cosine of the last epoch's gradient term. ``--score-teachers 0,3`` first scores those teachers alike.
``--n-train 0`` trains on all 59,000 training images the teachers trained on (the full-size protocol's student
data); ``--device cuda`` runs it all on a GPU.
"""
import argparse
import json
import time

import numpy as np
import torch
from sklearn.model_selection import StratifiedShuffleSplit

from _common import load_teachers
from robustkd import MultiTeacherDistiller, SmallCNN, robust_score
from robustkd.callbacks import OneCycleLR, WeightAveraging
from robustkd.datasets import load_split


class PenalisedDistiller(MultiTeacherDistiller):
    """The distiller plus the control term ``penalty * eps * mean_i ||grad_x CE_i||_1`` in training, on the
    student's input gradient that the gradient term has just computed (kept from ``_student_gradients``)."""

    penalty, penalty_eps, uniform_features = 0.0, 0.1, False

    def _student_gradients(self, y_pred, x, y, training):
        self._student_grad = super()._student_gradients(y_pred, x, y, training)
        return self._student_grad

    def gradient_matching_term(self, y_pred, y_true, X, teacher_logits, weights, training=False):
        term = super().gradient_matching_term(y_pred, y_true, X, teacher_logits, weights, training)
        if training and self.penalty:   # the caller multiplies by gradient_matching
            l1 = self._student_grad.flatten(1).abs().sum(1).mean()
            term = term + self.penalty / self.gradient_matching * self.penalty_eps * l1
        return term

    def feature_matching_term(self, X, weights, training=False):
        if self.uniform_features:   # every teacher's features alike, whatever the logits' weights
            weights = torch.full_like(weights, 1.0 / weights.shape[1])
        return super().feature_matching_term(X, weights, training)


class TrackedAverage(WeightAveraging):
    """A weight average that is only tracked: the net keeps its trained weights after ``fit``."""

    def on_train_end(self, net, **kwargs):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", required=True, nargs="+",
                        help="files (globs) of saved TeacherPools or single teachers, in this order")
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=10000, help="training images (0: all the teachers' 59,000)")
    parser.add_argument("--verbose", type=int, default=0, help="skorch's per-epoch table (1) or none (0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:<index> or auto")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--configs", required=True, help="a JSON list of configs")
    parser.add_argument("--apgd-n-valid", type=int, default=500, help="held-out images under APGD (0: none)")
    parser.add_argument("--score-teachers", default="", help="comma-separated pool indices to score first")
    args = parser.parse_args()
    X, _, y, _ = load_split("fashion-mnist", args.data_home, False, 0, None, None)
    pool = load_teachers(args.teachers)   # every file's teachers, in order
    train, valid = next(StratifiedShuffleSplit(test_size=1000, random_state=0).split(X, y))  # the protocol's
    subset = np.random.RandomState(0).choice(train, args.n_train, replace=False) if args.n_train else train
    Xv, yv = X[valid], y[valid]

    def scores(model):
        out = dict(clean=float(np.mean(model.predict(Xv) == yv)),
                   pgd=robust_score(model, Xv, yv, "pgd", eps=0.1, random_state=0, device=args.device))
        if args.apgd_n_valid:
            n = args.apgd_n_valid
            out["apgd"] = robust_score(model, Xv[:n], yv[:n], "apgd", eps=0.1, random_state=0, device=args.device)
        return out

    for i in [int(i) for i in args.score_teachers.split(",") if i]:
        print(json.dumps(dict(teacher=i, attack=getattr(pool[i], "attack", None), **scores(pool[i]))), flush=True)
    for c in json.loads(args.configs):
        start = time.perf_counter()
        teachers = [pool[i] for i in c.get("teachers", range(len(pool)))]
        weights = {} if c.get("default") else dict(weighter=c.get("scheme", "uniform"), weighter__tau=c.get("tau", 1.0),
                                                   weighter__eps_scale=c.get("eps_scale", 1.0))
        student = PenalisedDistiller(
            teachers, module=SmallCNN, module__input_shape=(1, 28, 28), gradient_matching=c["lam"],
            feature_matching=c.get("mu", 0.0), feature_layers=c.get("layers", "auto"),
            lr=c.get("lr", 4e-3), alpha=c.get("alpha", 0.9), temperature=c.get("T", 4.0), device=args.device,
            max_epochs=c.get("epochs", args.epochs), batch_size=64, train_split=None, verbose=args.verbose,
            random_state=c.get("seed", 0),
            callbacks=([OneCycleLR()] if c.get("sched", "onecycle") == "onecycle" else [])
            + [(f"ema_{d}", TrackedAverage(decay=d)) for d in c.get("ema", [])], **weights)
        student.penalty = c.get("penalty", 0.0)
        student.uniform_features = c.get("features", "weighted") == "uniform"
        X_fit, y_fit = X[subset], y[subset]
        if c.get("flip"):
            X_fit, y_fit = np.concatenate([X_fit, X_fit[..., ::-1]]), np.concatenate([y_fit, y_fit])
        student.fit(X_fit, y_fit)
        fit = time.perf_counter() - start
        cos = [b["grad_cos"] for b in student.history[-1]["batches"] if "grad_cos" in b]
        row = dict(c, **scores(student), fit_s=round(fit, 1), cos=round(float(np.mean(cos)), 3) if cos else None)
        trained = {k: v.clone() for k, v in student.module_.state_dict().items()}
        for name, cb in student.callbacks_:
            if isinstance(cb, TrackedAverage):
                student.module_.load_state_dict(cb.average_)
                row[name] = scores(student)
        student.module_.load_state_dict(trained)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
