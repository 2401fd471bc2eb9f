"""How robustkd's estimators fit: shuffling, seeding, Ctrl-C, resuming, criterion, devices and inputs."""
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, robust_score
from robustkd.persistence import fit_resumable


def teacher(**kwargs):
    params = dict(module__input_shape=(1, 8, 8), attack="fgsm", eps=0.1, max_epochs=2, batch_size=16,
                  train_split=None, verbose=0, random_state=0)
    params.update(kwargs)
    return AdversarialTeacher(SmallCNN, **params)


class BatchLabels(Callback):
    """Records the labels of every training batch, per epoch."""

    def on_epoch_begin(self, net, **kwargs):
        self.epochs_ = getattr(self, "epochs_", []) + [[]]

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self.epochs_[-1].extend(np.asarray(batch[1]).tolist())


class InterruptAt(Callback):
    """Presses Ctrl-C (sends this process SIGINT) at the start of epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at:
            signal.raise_signal(signal.SIGINT)


class StopAt(Callback):
    """Stops the fit the way skorch's EarlyStopping does (raises KeyboardInterrupt) after epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.at:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def small(digits):
    X_train, X_test, y_train, y_test = digits
    return X_train[:64], X_test[:100], y_train[:64], y_test[:100]


@pytest.mark.parametrize("make", ["teacher", "distiller"])
def test_training_batches_are_shuffled_each_epoch_and_seeded(small, make):
    X, _, y, _ = small
    teachers = [teacher(max_epochs=1).fit(X, y)]

    def fit(seed):
        cb = BatchLabels()
        if make == "teacher":
            teacher(callbacks=[cb], random_state=seed).fit(X, y)
        else:
            MultiTeacherDistiller(teachers, max_epochs=2, batch_size=16, train_split=None, verbose=0,
                                  callbacks=[cb], random_state=seed).fit(X, y)
        return cb.epochs_

    first, again, other = fit(0), fit(0), fit(1)
    assert sorted(first[0]) == sorted(y.tolist())             # every sample once per epoch
    assert first[0] != y.tolist(), "batches must not come in the data's order"
    assert first[0] != first[1], "each epoch must draw a new order"
    assert first == again and first != other                  # seeded by random_state


def test_ctrl_c_propagates_after_the_finished_epochs_and_restores_the_rng(small):
    X, _, y, _ = small
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    net = teacher(max_epochs=4, callbacks=[InterruptAt(3)])
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y)
    assert torch.equal(torch.rand(3), expected), "the caller's RNG must be restored"
    assert [row["epoch"] for row in net.history if "dur" in row] == [1, 2]


@pytest.mark.parametrize("kind", ["teacher", "distiller"])
def test_interrupted_fit_resumable_continues_exactly_like_an_uninterrupted_fit(small, tmp_path, kind):
    X, X_test, y, _ = small
    pool = [teacher(max_epochs=1).fit(X, y)]

    def make(**kwargs):
        if kind == "teacher":
            return teacher(max_epochs=4, **kwargs)
        return MultiTeacherDistiller(pool, max_epochs=4, batch_size=16, train_split=None, verbose=0,
                                     random_state=0, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        fit_resumable(make(callbacks=[InterruptAt(3)]), X, y, tmp_path / "a")
    resumed = fit_resumable(make(), X, y, tmp_path / "a")
    straight = fit_resumable(make(), X, y, tmp_path / "b")
    assert len(resumed.history) == 4
    assert np.array_equal(resumed.predict_proba(X_test), straight.predict_proba(X_test))


def test_fit_resumable_does_not_swallow_ctrl_c_for_plain_skorch_nets(small, tmp_path):
    from skorch import NeuralNetClassifier

    X, _, y, _ = small
    net = NeuralNetClassifier(SmallCNN, module__input_shape=(1, 8, 8), criterion=torch.nn.CrossEntropyLoss,
                              max_epochs=3, train_split=None, verbose=0, callbacks=[InterruptAt(2)])
    with pytest.raises(KeyboardInterrupt):
        fit_resumable(net, X, y, tmp_path)


@pytest.mark.parametrize("kind", ["teacher", "distiller", "fit_resumable"])
def test_a_callback_that_stops_the_fit_ends_it_normally_unlike_ctrl_c(small, tmp_path, kind):
    from skorch.callbacks import EarlyStopping

    X, _, y, _ = small
    if kind == "distiller":
        pool = [teacher(max_epochs=1).fit(X, y)]
        net = MultiTeacherDistiller(pool, max_epochs=5, batch_size=16, train_split=None, verbose=0,
                                    random_state=0, callbacks=[StopAt(2)])
    else:
        net = teacher(max_epochs=5, callbacks=[StopAt(2)])
    fitted = fit_resumable(net, X, y, tmp_path) if kind == "fit_resumable" else net.fit(X, y)
    assert len(fitted.history) == 2
    # skorch's own EarlyStopping, on a validation split that cannot improve (lr 0)
    net = teacher(max_epochs=6, lr=0.0, train_split=ValidSplit(4, stratified=False),
                  callbacks=[EarlyStopping(patience=2)])
    assert len(net.fit(X, y).history) == 3


def test_ctrl_c_and_a_callbacks_stop_are_told_apart_also_outside_the_main_thread():
    from robustkd._interrupts import is_ctrl_c

    def raised_by(fn):
        try:
            fn()
        except KeyboardInterrupt as exc:
            return exc

    def ctrl_c():
        raise KeyboardInterrupt

    callback = StopAt(0)
    from_callback = raised_by(lambda: callback.on_epoch_end(type("Net", (), {"history": []})()))
    assert is_ctrl_c(from_callback, None) is False and is_ctrl_c(raised_by(ctrl_c), None) is True
    assert is_ctrl_c(from_callback, True) is True and is_ctrl_c(raised_by(ctrl_c), False) is False


def test_distiller_uses_its_criterion_for_the_hard_label_term(small):
    X, _, y, _ = small
    pool = [teacher(max_epochs=1).fit(X, y)]
    student = MultiTeacherDistiller(pool, alpha=0.0, criterion__label_smoothing=0.5, max_epochs=1,
                                    train_split=None, verbose=0, random_state=0).fit(X, y)
    logits, labels = torch.randn(6, 10), torch.arange(6)
    loss = student.get_loss(logits, labels, teacher_logits=torch.randn(6, 1, 10))
    assert torch.allclose(loss, F.cross_entropy(logits, labels, label_smoothing=0.5))
    assert not torch.allclose(loss, F.cross_entropy(logits, labels))


def test_unknown_device_and_missing_cuda_are_clear_errors(small):
    X, _, y, _ = small
    with pytest.raises(ValueError, match=r"device must be one of 'cpu', 'cuda'.*got device='gpu'"):
        teacher(device="gpu").fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' was asked for, but CUDA is not available"):
            teacher(device="cuda").fit(X, y)
        with pytest.raises(ValueError, match="CUDA is not available"):
            robust_score(teacher(max_epochs=1).fit(X, y), X, y, "fgsm", device="cuda")


def test_device_auto_picks_what_the_machine_has(small):
    X, _, y, _ = small
    net = teacher(device="auto", max_epochs=1).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert net.device == expected and next(net.module_.parameters()).device.type == expected


def test_a_pandas_dataframe_of_flat_pixels_is_accepted(small):
    pd = pytest.importorskip("pandas")
    X, X_test, y, _ = small
    frame = pd.DataFrame(X.reshape(len(X), -1))
    net = teacher(max_epochs=1).fit(frame, pd.Series(y))
    expected = teacher(max_epochs=1).fit(X.reshape(len(X), -1), y)
    flat_test = pd.DataFrame(X_test.reshape(len(X_test), -1))
    assert np.array_equal(net.predict(flat_test), expected.predict(X_test.reshape(len(X_test), -1)))


def test_images_without_the_channel_axis(small):
    X, X_test, y, _ = small
    net = teacher(max_epochs=1).fit(X[:, 0], y)       # SmallCNN with one channel: unambiguous
    assert np.array_equal(net.predict(X_test[:, 0]), net.predict(X_test))

    class NoReshape(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.head = torch.nn.LazyLinear(10)

        def forward(self, x):
            return self.head(self.conv(x).flatten(1))

    with pytest.raises(ValueError, match=r"images need a channel axis: pass X\[:, None\]"):
        AdversarialTeacher(NoReshape, attack=None, max_epochs=1, train_split=None, verbose=0).fit(X[:, 0], y)


def test_string_labels_are_encoded_and_predicted_back(small):
    X, X_test, y, y_test = small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    net = teacher(max_epochs=2).fit(X, names[y])
    by_index = teacher(max_epochs=2).fit(X, np.searchsorted(np.sort(names), names[y]))
    assert list(net.classes_) == sorted(names)
    predicted = net.predict(X_test)
    assert predicted.dtype.kind == "U" and set(predicted) <= set(names)
    assert np.array_equal(predicted, np.sort(names)[by_index.predict(X_test)])
    assert net.score(X_test, names[y_test]) == by_index.score(X_test, np.searchsorted(np.sort(names), names[y_test]))
    assert robust_score(net, X_test, names[y_test], "fgsm", eps=0.1, random_state=0) == robust_score(
        by_index, X_test, np.searchsorted(np.sort(names), names[y_test]), "fgsm", eps=0.1, random_state=0)
    with pytest.raises(ValueError, match=r"labels \['ten'\] that the model was not fitted on"):
        robust_score(net, X_test[:2], ["one", "ten"], "fgsm", eps=0.1)
    from robustkd import TeacherPool

    pool = TeacherPool(teacher(max_epochs=1), attacks=["fgsm"], random_state=0).fit(X, names[y])
    assert set(pool.predict(X_test)) <= set(names)
    student = MultiTeacherDistiller([net], max_epochs=1, train_split=None, verbose=0, random_state=0)
    student.fit(X[y != 3], names[y][y != 3])                  # a class missing: the teachers' classes still hold
    assert list(student.classes_) == sorted(names) and set(student.predict(X_test)) <= set(names)


def test_an_eps_beyond_the_input_range_warns():
    from robustkd.attacks import get_attack
    from robustkd.exceptions import RobustKDWarning

    with pytest.warns(RobustKDWarning, match=r"eps=8 is larger than the input range.*eps=0.0314"):
        get_attack("pgd", torch.nn.Identity(), eps=8)


def test_unfitted_nets_raise_the_same_not_fitted_error_everywhere(small):
    from sklearn.exceptions import NotFittedError

    from robustkd.persistence import save_weights

    X, _, y, _ = small
    for call in (lambda: teacher().predict(X), lambda: teacher().predict_proba(X),
                 lambda: robust_score(teacher(), X, y, "fgsm"), lambda: save_weights(teacher(), "unused.pt")):
        with pytest.raises(NotFittedError, match="This AdversarialTeacher is not fitted yet; call fit before"):
            call()
