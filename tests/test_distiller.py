import copy
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit
from torch import nn

from robustkd import AdaptiveWeighter, MultiTeacherDistiller, SmallCNN, make_robust_scorer, robust_score
from robustkd.losses import mixture_kd_loss

from conftest import check_search_scores


def make_distiller(teachers, **kwargs):
    params = dict(max_epochs=15, batch_size=64, train_split=None, verbose=0, random_state=0)
    params.update(kwargs)
    return MultiTeacherDistiller(teachers, **params)


@pytest.fixture(scope="module")
def student(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    # every term on, the feature term included ("auto" leaves it off on 8x8 images)
    return make_distiller(teacher_pool.teachers_, feature_matching=10.0).fit(X_train, y_train)


def test_clean_data_student_gains_robustness_and_keeps_accuracy(student, standard_net, digits):
    _, X_test, _, y_test = digits
    clean, clean_std = student.score(X_test, y_test), standard_net.score(X_test, y_test)
    assert clean >= clean_std - 0.05, (clean, clean_std)
    for attack in ("pgd", "fgsm"):
        ours = robust_score(student, X_test, y_test, attack, eps=0.2, random_state=0)
        std = robust_score(standard_net, X_test, y_test, attack, eps=0.2, random_state=0)
        assert ours > std + 0.05, (attack, ours, std)


def test_default_student_is_a_fresh_copy_of_the_teachers_architecture(student, teacher_pool):
    assert type(student.module_) is SmallCNN
    t0 = teacher_pool.teachers_[0].module_
    assert [p.shape for p in student.module_.parameters()] == [p.shape for p in t0.parameters()]
    assert not torch.equal(next(student.module_.parameters()), next(t0.parameters()))


def test_history_records_mean_teacher_weights_per_epoch(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    # per-input weights that differ between teachers (uniform ones would sum to one whatever the code did)
    d = make_distiller(teacher_pool.teachers_, weighter="confidence", weighter__tau=0.05, max_epochs=2,
                       gradient_matching=0.0, feature_matching=0.0).fit(X_train[:256], y_train[:256])
    w = d.mean_teacher_weights()
    assert w.shape == (2, 3) and np.allclose(w.sum(1), 1, atol=1e-5)
    assert w.std(1).min() > 1e-3, w                           # the teachers do get different weights
    batches = d.history[-1, "batches"]
    assert w[-1].tolist() == pytest.approx([np.mean([b[f"weight_t{k}"] for b in batches]) for k in range(3)])
    assert d.history[-1, "weight_t1"] == pytest.approx(w[-1, 1])


def test_predict_proba_returns_probabilities_not_logits(student, digits):
    _, X_test, _, _ = digits
    proba = student.predict_proba(X_test)
    assert (proba >= 0).all() and np.allclose(proba.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        expected = torch.softmax(student.module_(torch.from_numpy(X_test)), 1).numpy()
    assert np.allclose(proba, expected, atol=1e-6)


def test_optimizer_holds_only_student_parameters(student):
    in_optimizer = {id(p) for group in student.optimizer_.param_groups for p in group["params"]}
    adapters = {id(p) for p in student.feature_adapters_.parameters()}   # the feature term's, trained with it
    assert adapters and in_optimizer == {id(p) for p in student.module_.parameters()} | adapters
    assert not in_optimizer & {id(p) for p in student.teachers_.parameters()}
    assert not any(p.requires_grad for p in student.teachers_.parameters())


class NormTeacher(nn.Module):
    """A teacher with BatchNorm and Dropout, whose outputs would change in train mode."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(32, 10))

    def forward(self, X):
        return self.net(X)


def test_teachers_stay_frozen_in_eval_mode_and_the_users_objects_are_untouched(digits):
    X_train, _, y_train, _ = digits
    torch.manual_seed(0)
    teachers = [NormTeacher().train(), NormTeacher().eval()]
    for t in teachers:  # give BatchNorm non-trivial statistics
        t.train()(torch.from_numpy(X_train[:256]))
    teachers[1].eval()
    before = [copy.deepcopy(t.state_dict()) for t in teachers]
    modes = [[m.training for m in t.modules()] for t in teachers]
    dist = make_distiller(teachers, module=SmallCNN, module__input_shape=(1, 8, 8), max_epochs=3,
                          cache_teacher_outputs=False).fit(X_train[:300], y_train[:300])
    for t, state, mode in zip(teachers, before, modes):
        assert all(torch.equal(v, t.state_dict()[k]) for k, v in state.items())
        assert [m.training for m in t.modules()] == mode
        assert all(p.requires_grad for p in t.parameters())
    assert not any(m.training for m in dist.teachers_.modules()), "skorch must not switch teachers to train"
    for frozen, state in zip(dist.teachers_, before):
        assert torch.equal(frozen.net[2].running_mean, state["net.2.running_mean"]), "BatchNorm statistics drifted"


def test_distiller_pickles_teacher_weights_once(student, teacher_pool):
    size_teachers = len(pickle.dumps(teacher_pool.teachers_))
    size_student = len(pickle.dumps(student.module_)) + len(pickle.dumps(student.feature_adapters_))
    size = len(pickle.dumps(student))
    # teachers once, plus the student (with its feature adapters) and Adam's two moment buffers (and a little
    # bookkeeping)
    assert size < size_teachers + 3.5 * size_student, (size, size_teachers, size_student)
    assert size < 1.5 * size_teachers, "teacher weights are stored twice"


def test_joblib_round_trip_predicts_identically(student, digits, tmp_path):
    _, X_test, _, _ = digits
    joblib.dump(student, tmp_path / "d.joblib")
    loaded = joblib.load(tmp_path / "d.joblib")
    assert np.array_equal(loaded.predict_proba(X_test), student.predict_proba(X_test))
    assert len(loaded.teachers_) == 3 and not any(m.training for m in loaded.teachers_.modules())
    logits = loaded.teacher_logits(torch.from_numpy(X_test[:5]))
    assert torch.equal(logits, student.teacher_logits(torch.from_numpy(X_test[:5])))


def test_clone_keeps_the_fitted_teachers(student):
    twin = clone(student)
    assert twin.teachers is student.teachers and not hasattr(twin, "module_")
    assert all(hasattr(t, "module_") for t in twin.teachers)
    assert twin.get_params()["weighter"] == "uniform" and twin.get_params()["gradient_matching"] == 2.0


def test_grid_search_over_weighting_schemes_with_a_robust_scorer(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    search = GridSearchCV(make_distiller(teacher_pool, max_epochs=2),
                          {"weighter__scheme": ["uniform", "confidence", "camkd"]},
                          scoring=make_robust_scorer("fgsm", eps=0.1, random_state=0), cv=2)
    search.fit(X_train[:400], y_train[:400])
    check_search_scores(search, X_train[:400], y_train[:400])
    assert search.best_estimator_.weighter_.scheme == search.best_params_["weighter__scheme"]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_weighter_accepts_instances_names_and_callables(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    fit = dict(X=X_train[:128], y=y_train[:128])
    d = make_distiller(teacher_pool, weighter=AdaptiveWeighter("loss", tau=0.5), weighter__scheme="entropy",
                       max_epochs=1).fit(**fit)
    assert (d.weighter_.scheme, d.weighter_.tau) == ("entropy", 0.5)
    assert make_distiller(teacher_pool, weighter="uniform", max_epochs=1).fit(**fit).weighter_.scheme == "uniform"
    first_only = make_distiller(teacher_pool, weighter=lambda z, y: torch.tensor([1.0, 0.0, 0.0]).expand(len(z), 3),
                                max_epochs=1).fit(**fit)
    assert first_only.mean_teacher_weights()[0].tolist() == [1.0, 0.0, 0.0]


def test_cache_gives_the_same_student_as_recomputing_teachers(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    # logits and gradients exactly (the float16 feature cache is compared in test_feature_matching)
    a = make_distiller(teacher_pool, max_epochs=2, cache_teacher_features=False).fit(X_train[:300], y_train[:300])
    b = make_distiller(teacher_pool, max_epochs=2, cache_teacher_outputs=False).fit(X_train[:300], y_train[:300])
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)
    # the cache lives in the training dataset only: nothing of the training set's size stays on the net
    assert not any(isinstance(v, torch.Tensor) and len(v) == 300 for v in vars(a).values()), \
        "the cache is dropped after fit"


def test_same_seed_same_student_and_global_rng_untouched(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    state = torch.get_rng_state()
    a, b = (make_distiller(teacher_pool, max_epochs=2).fit(X_train[:300], y_train[:300]) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.module_.parameters(), b.module_.parameters()))


class IndexRecorder(MultiTeacherDistiller):
    """Records which training rows reach the train and validation steps."""

    def train_step_single(self, batch, **fit_params):
        self.train_rows_ = getattr(self, "train_rows_", set()) | set(batch[0]["index"].tolist())
        return super().train_step_single(batch, **fit_params)

    def validation_step(self, batch, **fit_params):
        self.valid_rows_ = getattr(self, "valid_rows_", set()) | set(batch[0]["index"].tolist())
        return super().validation_step(batch, **fit_params)


def test_early_stopping_uses_a_split_of_the_training_data(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    d = IndexRecorder(teacher_pool, max_epochs=30, batch_size=64, verbose=0, random_state=0,
                      train_split=ValidSplit(0.2, stratified=True, random_state=0),
                      callbacks=[EarlyStopping(monitor="valid_loss", patience=2)]).fit(X_train[:500], y_train[:500])
    assert d.valid_rows_ and not d.valid_rows_ & d.train_rows_
    assert d.valid_rows_ | d.train_rows_ == set(range(500))
    assert "valid_loss" in d.history[-1] and "valid_acc" in d.history[-1]


@pytest.mark.parametrize("mode", ["adversarial", "mixed", "rslad"])
def test_adversarial_student_is_more_robust_than_clean_student(teacher_pool, digits, mode):
    X_train, X_test, y_train, y_test = digits
    kw = dict(max_epochs=4, gradient_matching=0.0, feature_matching=0.0)   # the student_inputs alone
    clean = make_distiller(teacher_pool, **kw).fit(X_train, y_train)
    adv = make_distiller(teacher_pool, student_inputs=mode, student_eps=0.2, student_attack__nb_iter=5,
                         **kw).fit(X_train, y_train)
    assert (robust_score(adv, X_test, y_test, "pgd", eps=0.2, random_state=0)
            > robust_score(clean, X_test, y_test, "pgd", eps=0.2, random_state=0) + 0.05)


def test_an_rslad_student_uses_soft_labels_only_and_attacks_towards_the_teachers(teacher_pool, digits):
    """RSLAD: adversarial examples against the teachers' clean soft labels; alpha * KD on them plus
    (1 - alpha) * KD on the clean inputs; no hard-label term, so the labels do not change the loss."""
    import torch.nn.functional as F

    X_train, _, y_train, _ = digits
    seen = []

    class Recorder(MultiTeacherDistiller):
        def adversarial_examples(self, X, y):
            seen.append(torch.as_tensor(y))
            return super().adversarial_examples(X, y)

    d = Recorder(teacher_pool, max_epochs=1, batch_size=64, train_split=None, verbose=0, random_state=0,
                 student_inputs="rslad", student_eps=0.2, student_attack__nb_iter=3, gradient_matching=0.0,
                 feature_matching=0.0, weighter="uniform", alpha=5 / 6, temperature=1.0).fit(X_train[:128],
                                                                                               y_train[:128])
    assert d.training_attack() == "pgd_kl" and d.build_attack().nb_iter == 3
    assert seen and torch.is_floating_point(seen[0]) and seen[0].shape == (64, 10)
    x = torch.as_tensor(X_train[:64])
    z = d.teacher_logits(x)
    soft = F.softmax(z, dim=2).mean(1)                    # uniform weights: the teachers' mean soft labels
    d.module_.train()
    seen.clear()
    y_pred = d.infer(x)
    with torch.random.fork_rng():
        torch.manual_seed(0)                              # the attack's random start
        loss = d.get_loss(y_pred, torch.as_tensor(y_train[:64]), X=x, training=True)
        torch.manual_seed(0)
        adv = d.adversarial_examples(x, soft)
    torch.testing.assert_close(seen[0], soft)
    with torch.no_grad():
        adv_pred = d.infer(adv)
    w = torch.full((64, 3), 1 / 3)
    expected = (5 / 6 * mixture_kd_loss(adv_pred, z, w, 1.0) + 1 / 6 * mixture_kd_loss(y_pred, z, w, 1.0))
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        shuffled = d.get_loss(y_pred, torch.as_tensor(y_train[:64]).flip(0), X=x, training=True)
    assert float(shuffled) == pytest.approx(float(loss), rel=1e-4)   # no label reaches the loss


class FiveClass(nn.Module):
    def forward(self, X):
        return X.flatten(1)[:, :5] * 3


@pytest.mark.parametrize("make, exc, match", [
    (lambda pool: make_distiller([]), ValueError, "teachers must be a non-empty list"),
    (lambda pool: make_distiller(pool.teachers_[0]), ValueError, "teachers must be a non-empty list"),
    (lambda pool: make_distiller([clone(pool.teachers_[0])]), ValueError, r"teachers\[0\] .* is not fitted"),
    (lambda pool: make_distiller(["t"]), TypeError, r"teachers\[0\] must be a fitted skorch net"),
    (lambda pool: make_distiller([pool.teachers_[0], FiveClass()], module=SmallCNN, module__input_shape=(1, 8, 8)),
     ValueError, r"the teachers disagree on the number of classes: \[10, 5\]"),
    (lambda pool: make_distiller([pool.teachers_[0], FiveClass()]), ValueError, "do not share one architecture"),
    (lambda pool: make_distiller(pool, temperature=0), ValueError, "temperature must be a finite number > 0; got temperature=0"),
    (lambda pool: make_distiller(pool, alpha=2), ValueError, r"alpha must be a finite number in \[0, 1\]; got alpha=2"),
    (lambda pool: make_distiller(pool, student_inputs="noisy"), ValueError, "student_inputs must be one of"),
    (lambda pool: make_distiller(pool, kd="max"), ValueError, "kd must be one of"),
    (lambda pool: make_distiller(pool, weighter__scheme="best"), ValueError, "scheme must be one of"),
    (lambda pool: make_distiller(pool, student_inputs="adversarial", student_attack="nope"), ValueError,
     "Unknown student_attack"),
    (lambda pool: make_distiller(pool, module=SmallCNN, module__n_classes=4, module__input_shape=(1, 8, 8)),
     ValueError, "the student has 4 outputs but the teachers have 10"),
])
def test_bad_configuration_fails_before_training(teacher_pool, digits, make, exc, match):
    X_train, _, y_train, _ = digits
    with pytest.raises(exc, match=match):
        make(teacher_pool).fit(X_train[:64], y_train[:64])


def test_bad_data_fails_with_a_clear_error(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    # the same message as every other entry point (issue 11: identical errors everywhere)
    with pytest.raises(ValueError, match=r"y holds labels \[12\] outside the model's classes 0..9"):
        make_distiller(teacher_pool).fit(X_train[:64], np.where(y_train[:64] == 3, 12, y_train[:64]))
    with pytest.raises(ValueError, match=r"teachers\[0\] cannot take inputs of shape \(1, 6, 6\)"):
        make_distiller(teacher_pool, module=SmallCNN, module__input_shape=(1, 6, 6)).fit(
            X_train[:64, :, :6, :6], y_train[:64])
