"""Per-epoch trace of robustkd's default student on the full-size Fashion-MNIST teachers: training loss and the
gradient term's mean cosine (all batches, last 50), epoch seconds; then fit seconds, clean accuracy on the 10,000
test images and PGD-10 accuracy at eps 0.1 on the first 500. Shows whether the gradient term trains stably.
``feature_matching`` (default 0: the default recipe before feature matching, as the README's figures were
measured; 10 for today's default).

Usage::

    python benchmarks/gradient_matching_epochs.py 'fmnist_full/models/teachers-*.joblib' [seed] [n_train] [feature_matching]
"""
import glob
import sys
import time

import joblib
import numpy as np
from skorch.callbacks import Callback

from robustkd import MultiTeacherDistiller, SmallCNN, robust_score
from robustkd.callbacks import OneCycleLR
from robustkd.datasets import load_split


class Trace(Callback):
    def on_epoch_end(self, net, **kwargs):
        cos = [b["grad_cos"] for b in net.history[-1]["batches"] if "grad_cos" in b]
        print(len(net.history), round(net.history[-1]["train_loss"], 4), round(float(np.mean(cos)), 3),
              round(float(np.mean(cos[-50:])), 3), round(net.history[-1]["dur"]), flush=True)


def main():
    teachers = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 60000
    feature_matching = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    X, X_test, y, y_test = load_split("fashion-mnist", "../shared/data", False, 0, None, None)
    pool = joblib.load(glob.glob(teachers)[0])["model"]
    print("epoch train_loss grad_cos grad_cos_last50 seconds")
    start = time.perf_counter()
    student = MultiTeacherDistiller(pool, module=SmallCNN, module__input_shape=(1, 28, 28), lr=4e-3, max_epochs=10,
                                    batch_size=64, train_split=None, verbose=0, random_state=seed,
                                    feature_matching=feature_matching,
                                    callbacks=[OneCycleLR(), Trace()]).fit(X[:n], y[:n])
    print("fit", round(time.perf_counter() - start), "clean", np.mean(student.predict(X_test) == y_test),
          "pgd500", robust_score(student, X_test[:500], y_test[:500], "pgd", eps=0.1, random_state=0))


if __name__ == "__main__":
    main()
