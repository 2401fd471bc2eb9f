"""Safe persistence, resumable fits and clear errors on malformed input."""
import json

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from robustkd import (AdaptiveWeighter, MultiTeacherDistiller, SmallCNN, get_attack,
                      make_robust_scorer, robust_score, robustness_report)
from robustkd.persistence import fit_resumable, load_weights, save_weights
from robustkd.weighting import teacher_weights

from conftest import make_teacher


teacher = make_teacher


def test_teacher_weights_round_trip_without_pickle(digits, tmp_path):
    X_train, X_test, y_train, _ = digits
    fitted = teacher().fit(X_train[:300], y_train[:300])
    save_weights(fitted, tmp_path / "t.pt")
    restored = load_weights(teacher(), tmp_path / "t.pt")
    assert np.array_equal(restored.predict_proba(X_test), fitted.predict_proba(X_test))


def test_distiller_and_its_teachers_round_trip_without_pickle(teacher_pool, digits, tmp_path):
    X_train, X_test, y_train, _ = digits
    kw = dict(max_epochs=1, batch_size=64, train_split=None, verbose=0, random_state=0)
    fitted = MultiTeacherDistiller(teacher_pool, **kw).fit(X_train[:300], y_train[:300])
    save_weights(fitted, tmp_path / "d.pt")
    # the architecture comes from code: untrained teachers of the same shape; the weights come from the file
    blank = [SmallCNN(input_shape=(1, 8, 8)) for _ in range(3)]
    restored = load_weights(MultiTeacherDistiller(blank, **kw), tmp_path / "d.pt")
    assert np.array_equal(restored.predict_proba(X_test), fitted.predict_proba(X_test))
    x = torch.from_numpy(X_test[:10])
    assert torch.equal(restored.teacher_logits(x), fitted.teacher_logits(x))
    assert all(not p.requires_grad for p in restored.teachers_.parameters())


class Payload:
    """Unpickling this object would create a file: the kind of code a tampered pickle runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_tampered_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "robustkd-weights-1", "class": "AdversarialTeacher", "modules": Payload(str(marker))},
               tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a weights-only file that can be loaded safely"):
        load_weights(teacher(), tmp_path / "evil.pt")
    assert not marker.exists()


def test_weights_file_mismatches_are_clear(digits, tmp_path):
    X_train, _, y_train, _ = digits
    save_weights(teacher().fit(X_train[:100], y_train[:100]), tmp_path / "t.pt")
    with pytest.raises(ValueError, match="the file holds a AdversarialTeacher; got a MultiTeacherDistiller"):
        load_weights(MultiTeacherDistiller([SmallCNN((1, 8, 8))], max_epochs=1), tmp_path / "t.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a robustkd weights file"):
        load_weights(teacher(), tmp_path / "other.pt")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_weights(teacher(), tmp_path / "x.pt")


class Crash(Callback):
    """Kills the fit when epoch ``at`` begins, as a lost machine would."""

    def __init__(self, at):
        self.at = at

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at:
            raise RuntimeError("killed")


def test_killed_fit_resumes_to_the_same_epoch_count_with_history(digits, tmp_path):
    X_train, _, y_train, _ = digits
    X, y = X_train[:300], y_train[:300]
    with pytest.raises(RuntimeError, match="killed"):
        fit_resumable(teacher(max_epochs=6, callbacks=[Crash(at=4)]), X, y, tmp_path)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved) == 3
    resumed = fit_resumable(teacher(max_epochs=6), X, y, tmp_path)
    assert len(resumed.history) == 6 and resumed.history[:, "epoch"] == [1, 2, 3, 4, 5, 6]
    assert resumed.history[:3, "train_loss"] == [row["train_loss"] for row in saved]
    losses = resumed.history[:, "train_loss"]
    assert losses[3] < losses[0], "epoch 4 must continue from the checkpoint, not from fresh weights"
    again = fit_resumable(teacher(max_epochs=6), X, y, tmp_path)  # a finished fit is not extended
    assert len(again.history) == 6


def test_distiller_fit_resumes_too(teacher_pool, digits, tmp_path):
    X_train, _, y_train, _ = digits
    kw = dict(max_epochs=4, batch_size=64, train_split=None, verbose=0, random_state=0)
    with pytest.raises(RuntimeError, match="killed"):
        fit_resumable(MultiTeacherDistiller(teacher_pool, callbacks=[Crash(at=2)], **kw),
                      X_train[:200], y_train[:200], tmp_path)
    resumed = fit_resumable(MultiTeacherDistiller(teacher_pool, **kw), X_train[:200], y_train[:200], tmp_path)
    assert len(resumed.history) == 4 and "weight_t0" in resumed.history[-1]


def test_scores_are_identical_for_the_same_seed(standard_net, digits):
    _, X_test, _, y_test = digits
    a = robustness_report(standard_net, X_test, y_test, attacks=["pgd", "mim"], eps=[0.1], random_state=5)
    b = robustness_report(standard_net, X_test, y_test, attacks=["pgd", "mim"], eps=[0.1], random_state=5)
    assert a == b


# ---------------------------------------------------------------- malformed input, fuzz-style
GOOD_X = np.random.RandomState(0).rand(8, 1, 8, 8).astype(np.float32)
GOOD_Y = np.arange(8) % 10
BAD_INPUTS = [  # (label, change, the message every entry point gives)
    ("X 1-D", dict(X=np.zeros(8, dtype=np.float32)),
     r"X must have shape \(n_samples, \.\.\.\) with at least 2 dimensions; got shape \(8,\)"),
    ("X wrong channels", dict(X=np.zeros((8, 3, 8, 8), dtype=np.float32)),
     r"the mod(el|ule) cannot take inputs of shape \(3, 8, 8\)"),
    ("X wrong size", dict(X=np.zeros((8, 1, 5, 5), dtype=np.float32)),
     r"the mod(el|ule) cannot take inputs of shape \(1, 5, 5\)"),
    ("X NaN", dict(X=np.full((8, 1, 8, 8), np.nan, dtype=np.float32)), "X contains NaN or infinite values"),
    ("X inf", dict(X=np.full((8, 1, 8, 8), np.inf, dtype=np.float32)), "X contains NaN or infinite values"),
    ("X out of range", dict(X=GOOD_X * 255),
     r"X values lie in \[.*\], outside the attack's input range \[clip_min=0.0, clip_max=1.0\]"),
    ("X strings", dict(X=np.array([["a"]] * 8)), "X must be a numeric array or tensor"),
    ("X empty", dict(X=np.zeros((0, 1, 8, 8), dtype=np.float32), y=np.zeros(0, dtype=int)),
     r"X is empty \(0 samples\)"),
    ("y too short", dict(y=GOOD_Y[:3]), r"X and y have different lengths: len\(X\)=8, len\(y\)=3"),
    ("y 2-D", dict(y=GOOD_Y.reshape(4, 2)), r"y must be one-dimensional; got shape \(4, 2\)"),
    ("y negative", dict(y=-GOOD_Y - 1), r"y holds labels \[-8, .*\] outside the model's classes 0..9"),
    ("y beyond classes", dict(y=GOOD_Y + 10), r"y holds labels \[10, .*\] outside the model's classes 0..9"),
    ("y fractional", dict(y=GOOD_Y + 0.5), "y must hold integer class indices"),
]


@pytest.mark.parametrize("label, change, match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("entry", ["robust_score", "robustness_report", "scorer", "teacher.fit",
                                   "distiller.fit"])
def test_malformed_input_gets_a_clear_error_at_every_entry_point(standard_net, teacher_pool, entry, label,
                                                                 change, match):
    X, y = change.get("X", GOOD_X), change.get("y", GOOD_Y)
    fn = {
        "robust_score": lambda X, y: robust_score(standard_net, X, y, "fgsm", eps=0.1),
        "robustness_report": lambda X, y: robustness_report(standard_net, X, y, attacks=["fgsm"], eps=[0.1]),
        "scorer": lambda X, y: make_robust_scorer("fgsm", eps=0.1)(standard_net, X, y),
        "teacher.fit": lambda X, y: teacher(max_epochs=1).fit(X, y),
        "distiller.fit": lambda X, y: MultiTeacherDistiller(teacher_pool, max_epochs=1, train_split=None,
                                                            verbose=0).fit(X, y),
    }[entry]
    with pytest.raises((ValueError, TypeError), match=match):
        fn(X, y)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: get_attack("pgd", torch.nn.Identity(), eps=float("nan")), ValueError,
     "eps must be a finite number >= 0; got eps=nan"),
    (lambda: get_attack("pgd", torch.nn.Identity(), eps=True), TypeError, "eps must be a non-negative number"),
    (lambda: get_attack("pgd", None, eps=0.1), TypeError, "model must be a callable returning logits"),
    (lambda: teacher_weights(torch.zeros(3, 2)), ValueError, r"teacher_logits must be a tensor of shape \(n_samples"),
    (lambda: teacher_weights(np.zeros((3, 2, 4))), ValueError, "teacher_logits must be a tensor"),
    (lambda: AdaptiveWeighter(tau=-1)(torch.zeros(3, 2, 4), torch.zeros(3, dtype=torch.long)), ValueError,
     "tau must be a finite number > 0; got tau=-1"),
    (lambda: make_robust_scorer("pgd", eps=-1), ValueError, "eps must be a finite number >= 0; got eps=-1"),
    (lambda: make_robust_scorer([], eps=0.1), ValueError, "attack must name at least one attack"),
])
def test_malformed_arguments_to_helpers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_float64_inputs_are_accepted_like_float32(teacher_pool, digits):
    X_train, X_test, y_train, _ = digits
    a = teacher().fit(X_train[:200], y_train[:200])
    b = teacher().fit(X_train[:200].astype(np.float64), y_train[:200])
    assert np.array_equal(a.predict_proba(X_test), b.predict_proba(X_test.astype(np.float64)))
    d = MultiTeacherDistiller(teacher_pool, max_epochs=1, train_split=None, verbose=0, random_state=0)
    assert d.fit(X_train[:200].astype(np.float64), y_train[:200]).predict(X_test.astype(np.float64)).shape == (540,)
