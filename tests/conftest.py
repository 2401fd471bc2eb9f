"""Shared fixtures: seeded RNGs, the digits split, and a standard net fitted once per session."""
import os
import signal

import numpy as np
import pytest
import torch

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_reaches_python():
    """The Ctrl-C tests send this process SIGINT. A shell that starts pytest in the background without job
    control makes it ignore SIGINT, and Python then never raises KeyboardInterrupt: put Python's handler
    back for the session (a user's terminal never ignores it)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def digits():
    """Digits as images, split 70/30 with a fixed seed: (X_train, X_test, y_train, y_test)."""
    from sklearn.model_selection import train_test_split

    from robustkd.datasets import load_digits_images

    X, y = load_digits_images()
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def make_net(**kwargs):
    from skorch import NeuralNetClassifier

    from robustkd.models import SmallCNN

    params = dict(module__input_shape=(1, 8, 8), criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                  lr=1e-3, max_epochs=15, batch_size=64, train_split=None, verbose=0)
    params.update(kwargs)
    return NeuralNetClassifier(SmallCNN, **params)


def make_teacher(**kwargs):
    """A small digits AdversarialTeacher (2 epochs, seeded, no validation split); ``kwargs`` override."""
    from robustkd import AdversarialTeacher, SmallCNN

    params = dict(module__input_shape=(1, 8, 8), attack="fgsm", eps=0.2, max_epochs=2, batch_size=64,
                  train_split=None, verbose=0, random_state=0)
    params.update(kwargs)
    return AdversarialTeacher(SmallCNN, **params)


@pytest.fixture(scope="session")
def standard_net(digits):
    """A standard (not adversarially trained) SmallCNN fitted on the digits training split."""
    X_train, _, y_train, _ = digits
    torch.manual_seed(0)
    return make_net().fit(X_train, y_train)


@pytest.fixture(scope="session")
def fashion_home():
    if not os.path.isdir(os.path.join(SHARED_DATA, "FashionMNIST", "raw")):
        pytest.skip(f"Fashion-MNIST is not in {SHARED_DATA}/FashionMNIST/raw (tests never download)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def teacher_pool(digits):
    """FGSM-, PGD- and MIM-trained SmallCNN teachers (eps=0.2, 10 epochs each) on the digits split."""
    from robustkd import AdversarialTeacher, SmallCNN, TeacherPool

    X_train, _, y_train, _ = digits
    template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), eps=0.2, max_epochs=10, batch_size=64,
                                  train_split=None, verbose=0)
    return TeacherPool(template, attacks=["fgsm", "pgd", "mim"], random_state=0).fit(X_train, y_train)


def check_search_scores(search, X, y):
    """A fitted search picked the best mean score, and its split scores are the scorer's own values:
    split 0 of the first candidate is recomputed by hand (the estimators are seeded)."""
    from sklearn.base import clone
    from sklearn.model_selection import check_cv

    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and np.all((0 <= scores) & (scores <= 1))
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(scores))]
    train, test = next(check_cv(search.cv, y, classifier=True).split(X, y))
    est = clone(search.estimator).set_params(**search.cv_results_["params"][0]).fit(X[train], y[train])
    assert search.scorer_(est, X[test], y[test]) == search.cv_results_["split0_test_score"][0]
