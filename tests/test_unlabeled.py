"""Unlabeled samples (y == -1, scikit-learn's semi-supervised convention) in a distiller's fit."""
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.model_selection import GridSearchCV

from robustkd import MultiTeacherDistiller
from robustkd.losses import distillation_loss

from conftest import make_teacher


def distiller(teachers, **kwargs):
    params = dict(max_epochs=2, batch_size=64, train_split=None, verbose=0, random_state=0)
    params.update(kwargs)
    return MultiTeacherDistiller(teachers, **params)


def hide(y, share, seed=0):
    """``y`` with a random ``share`` of its labels replaced by -1."""
    y = np.array(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    y[rng.random(len(y)) < share] = -1
    return y


def test_unlabeled_samples_never_reach_the_hard_label_term(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:128], hide(y_train[:128], 0.5)
    d = distiller(teacher_pool, alpha=0.3, gradient_matching=0.0, feature_matching=0.0, max_epochs=1).fit(X, y)
    x, yt = torch.as_tensor(X), torch.as_tensor(y)
    z = d.teacher_logits(x)
    y_pred = d.infer(x).detach().requires_grad_()
    loss = d.get_loss(y_pred, yt, X=x, teacher_logits=z)
    labeled = yt >= 0
    filled = d.filled_labels(yt, z)
    assert torch.equal(filled[labeled], yt[labeled]) and (filled >= 0).all()
    teachers_label = F.softmax(z, 2).mean(1).argmax(1)
    assert torch.equal(filled[~labeled], teachers_label[~labeled]), "unlabeled: the teachers' mean prediction"
    kd = distillation_loss(y_pred, filled, z, d.batch_weights(x, filled, z), d.temperature, 1.0, d.kd)
    ce = F.cross_entropy(y_pred[labeled], yt[labeled]) * labeled.float().mean()
    assert torch.allclose(loss, 0.3 * kd + 0.7 * ce, atol=1e-6), "KD on every sample, CE on the labeled ones"
    # with the hard-label term alone, an unlabeled sample gets no gradient
    only_ce = distiller(teacher_pool, alpha=0.0, gradient_matching=0.0, feature_matching=0.0, max_epochs=1).fit(X, y)
    grad, = torch.autograd.grad(only_ce.get_loss(y_pred, yt, X=x, teacher_logits=z), y_pred)
    assert torch.all(grad[~labeled] == 0) and torch.any(grad[labeled] != 0)
    # ... and a fit on unlabeled samples only leaves such a student where it started
    blank = distiller(teacher_pool, alpha=0.0, gradient_matching=0.0, feature_matching=0.0, max_epochs=1)
    blank.initialize()
    before = [p.detach().clone() for p in blank.module_.parameters()]
    blank.partial_fit(X, np.full(len(X), -1))
    assert all(torch.equal(a, b) for a, b in zip(before, blank.module_.parameters()))


def test_unlabeled_samples_are_used_and_help_a_student_with_few_labels(teacher_pool, digits):
    X_train, X_test, y_train, y_test = digits
    few = 60
    y = y_train.copy()
    y_partial = np.concatenate([y[:few], np.full(len(y) - few, -1)])
    kw = dict(max_epochs=6, gradient_matching=0.0, feature_matching=0.0, alpha=0.5)
    alone = distiller(teacher_pool, **kw).fit(X_train[:few], y[:few])
    more = distiller(teacher_pool, **kw).fit(X_train, y_partial)
    assert list(more.classes_) == list(range(10))
    acc_alone, acc_more = alone.score(X_test, y_test), more.score(X_test, y_test)
    assert acc_more > acc_alone + 0.1, (acc_alone, acc_more)
    # every term reads a label on unlabeled samples: the teachers' (weights, gradients, attacks)
    full = distiller(teacher_pool, max_epochs=1, weighter="confidence", gradient_matching=1.0,
                     student_inputs="mixed", student_attack__nb_iter=1).fit(X_train[:200], hide(y_train[:200], 0.7))
    assert np.isfinite(full.history[-1, "train_loss"])


def test_a_fit_without_any_label_takes_the_classes_from_the_teachers(teacher_pool, digits):
    X_train, X_test, _, y_test = digits
    d = distiller(teacher_pool, max_epochs=5, lr=3e-3, gradient_matching=0.0, feature_matching=0.0).fit(
        X_train, np.full(len(X_train), -1))
    assert list(d.classes_) == list(range(10))
    assert d.score(X_test, y_test) > 0.5, "soft labels alone teach the student"


@pytest.mark.parametrize("bad, match", [
    (-2, r"y holds labels \[-2\] outside the model's classes 0..9 \(it has 10 outputs\); -1 marks an unlabeled"),
    (10, r"y holds labels \[10\] outside the model's classes 0..9 \(it has 10 outputs\); -1 marks an unlabeled"),
    (np.nan, r"y must hold integer class indices"),
])
def test_bad_label_values_are_refused(teacher_pool, digits, bad, match):
    X_train, _, y_train, _ = digits
    y = hide(y_train[:64], 0.3).astype(float)
    y[5] = bad
    with pytest.raises(ValueError, match=match):
        distiller(teacher_pool, max_epochs=1).fit(X_train[:64], y)


def test_scores_skip_unlabeled_samples_so_searches_and_resumes_work(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:240], hide(y_train[:240], 0.5)
    d = distiller(teacher_pool, max_epochs=1, gradient_matching=0.0, feature_matching=0.0).fit(X, y)
    labeled = y >= 0
    assert d.score(X, y) == pytest.approx(float(np.mean(d.predict(X[labeled]) == y[labeled])))
    with pytest.raises(ValueError, match="y has no labeled sample"):
        d.score(X, np.full(len(X), -1))
    search = GridSearchCV(distiller(teacher_pool, max_epochs=1, gradient_matching=0.0, feature_matching=0.0),
                          {"alpha": [0.5, 0.9]}, cv=2).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    d.partial_fit(X, y)
    assert len(d.history) == 2
    again = pickle.loads(pickle.dumps(d))
    assert np.array_equal(again.predict(X), d.predict(X))
    # a validation split: its accuracy counts the labeled samples only
    from skorch.dataset import ValidSplit
    v = distiller(teacher_pool, max_epochs=1, train_split=ValidSplit(4), gradient_matching=0.0,
                  feature_matching=0.0).fit(X, y)
    assert 0.0 <= v.history[-1, "valid_acc"] <= 1.0


def _teacher(**kwargs):
    return make_teacher(**{"attack": "fgsm_rs", "eps": 0.1, **kwargs})


def test_a_teacher_leaves_unlabeled_samples_out_or_trains_on_a_models_pseudo_labels(standard_net, digits):
    from sklearn.base import clone

    from robustkd import TeacherPool
    X_train, _, y_train, _ = digits
    X, y = X_train[:300], hide(y_train[:300], 0.6)
    labeled = y >= 0
    left_out = _teacher().fit(X, y)
    by_hand = _teacher().fit(X[labeled], y[labeled])
    assert all(torch.equal(a, b) for a, b in zip(left_out.module_.parameters(), by_hand.module_.parameters()))
    # robust self-training: the unlabeled samples get the pseudo-labeler's predictions, once per fit
    rst = _teacher(pseudo_labeler=standard_net).fit(X, y)
    filled = np.where(labeled, y, standard_net.predict(X))
    by_hand = _teacher().fit(X, filled)
    assert all(torch.equal(a, b) for a, b in zip(rst.module_.parameters(), by_hand.module_.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(rst.module_.parameters(), left_out.module_.parameters()))
    # clones and a pool's teachers share the fitted pseudo-labeler instead of copying it unfitted
    assert clone(rst).pseudo_labeler is standard_net
    pool = TeacherPool(_teacher(pseudo_labeler=standard_net, max_epochs=1), attacks=["fgsm_rs", "pgd"],
                       random_state=0).fit(X, y)
    assert all(t.pseudo_labeler is standard_net for t in pool.teachers_)
    with pytest.raises(ValueError, match=r"y has no labeled sample \(every label is -1\): pass pseudo_labeler"):
        _teacher().fit(X, np.full(len(X), -1))
    with pytest.raises(ValueError, match=r"pseudo_labeler must be None or an object with predict\(\); got "
                                         r"pseudo_labeler='yes'"):
        _teacher(pseudo_labeler="yes").fit(X[labeled], y[labeled])
