import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from robustkd import AdversarialTeacher, RobustAccuracy, SmallCNN, TeacherPool, make_robust_scorer, robust_score

from conftest import check_search_scores


def make_teacher(**kwargs):
    params = dict(module__input_shape=(1, 8, 8), eps=0.2, max_epochs=15, batch_size=64, train_split=None,
                  verbose=0, random_state=0)
    params.update(kwargs)
    return AdversarialTeacher(SmallCNN, **params)


@pytest.fixture(scope="module")
def pgd_teacher(digits):
    X_train, _, y_train, _ = digits
    return make_teacher(attack="pgd").fit(X_train, y_train)


def test_pgd_teacher_is_robust_where_the_standard_net_is_not(pgd_teacher, standard_net, digits):
    _, X_test, _, y_test = digits
    assert pgd_teacher.score(X_test, y_test) > 0.9
    robust = robust_score(pgd_teacher, X_test, y_test, "pgd", eps=0.2, nb_iter=10, random_state=0)
    standard = robust_score(standard_net, X_test, y_test, "pgd", eps=0.2, nb_iter=10, random_state=0)
    assert robust - standard >= 0.30, (robust, standard)


def test_fgsm_teacher_beats_the_standard_net_under_fgsm(standard_net, digits):
    X_train, X_test, y_train, y_test = digits
    teacher = make_teacher(attack="fgsm", max_epochs=10).fit(X_train, y_train)
    assert teacher.score(X_test, y_test) > 0.9
    assert (robust_score(teacher, X_test, y_test, "fgsm", eps=0.2)
            > robust_score(standard_net, X_test, y_test, "fgsm", eps=0.2) + 0.2)


def test_attack_none_is_standard_training(digits):
    X_train, X_test, y_train, y_test = digits
    net = make_teacher(attack=None, max_epochs=5).fit(X_train, y_train)
    assert net.score(X_test, y_test) > 0.85
    Xb, yb = torch.from_numpy(X_test[:8]), torch.from_numpy(y_test[:8])
    assert net.adversarial_batch(Xb, yb) is Xb


@pytest.mark.parametrize("ratio, n_adv", [(1.0, 16), (0.5, 8), (0.25, 4), (0.0, 0)])
def test_adv_ratio_replaces_that_fraction_of_each_batch(pgd_teacher, digits, ratio, n_adv):
    _, X_test, _, y_test = digits
    Xb, yb = torch.from_numpy(X_test[:16].copy()), torch.from_numpy(y_test[:16].copy())
    pgd_teacher.set_params(adv_ratio=ratio)
    try:
        out = pgd_teacher.adversarial_batch(Xb, yb)
    finally:
        pgd_teacher.set_params(adv_ratio=1.0)
    changed = (out - Xb).flatten(1).abs().max(1).values > 0
    assert changed[:n_adv].all() and not changed[n_adv:].any()
    assert torch.equal(Xb, torch.from_numpy(X_test[:16]))


def test_attack_gradients_never_reach_the_weights(pgd_teacher, digits):
    _, X_test, _, y_test = digits
    pgd_teacher.module_.train()
    pgd_teacher.optimizer_.zero_grad(set_to_none=True)
    pgd_teacher.adversarial_batch(torch.from_numpy(X_test[:32]), torch.from_numpy(y_test[:32]))
    assert all(p.grad is None for p in pgd_teacher.module_.parameters())
    assert pgd_teacher.module_.training and all(p.requires_grad for p in pgd_teacher.module_.parameters())
    pgd_teacher.module_.eval()


def test_fit_leaves_the_data_and_global_rng_alone(digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:200].copy(), y_train[:200].copy()
    state = torch.get_rng_state()
    make_teacher(attack="pgd", max_epochs=1).fit(X, y)
    assert np.array_equal(X, X_train[:200]) and np.array_equal(y, y_train[:200])
    assert torch.equal(torch.get_rng_state(), state)


def test_same_random_state_gives_identical_weights(digits):
    X_train, _, y_train, _ = digits
    a, b = (make_teacher(attack="pgd", max_epochs=2).fit(X_train[:300], y_train[:300]) for _ in range(2))
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(pa, pb)
    c = make_teacher(attack="pgd", max_epochs=2, random_state=1).fit(X_train[:300], y_train[:300])
    assert not torch.equal(next(a.module_.parameters()), next(c.module_.parameters()))


def test_params_round_trip_through_clone_and_set_params():
    teacher = make_teacher(attack="mim", eps=0.15, adv_ratio=0.5, attack__nb_iter=7)
    params = teacher.get_params()
    assert {"attack", "eps", "adv_ratio", "random_state", "attack__nb_iter"} <= set(params)
    twin = clone(teacher)
    assert twin.get_params()["attack__nb_iter"] == 7 and twin.adv_ratio == 0.5
    twin.set_params(eps=0.3, attack__nb_iter=3)
    assert (twin.eps, twin.get_params()["attack__nb_iter"]) == (0.3, 3)
    assert teacher.eps == 0.15
    assert clone(teacher).criterion is torch.nn.CrossEntropyLoss


def test_fitted_teacher_persists_with_pickle_and_joblib(pgd_teacher, digits, tmp_path):
    _, X_test, _, _ = digits
    expected = pgd_teacher.predict_proba(X_test)
    restored = pickle.loads(pickle.dumps(pgd_teacher))
    assert np.array_equal(restored.predict_proba(X_test), expected)
    joblib.dump(pgd_teacher, tmp_path / "t.joblib")
    loaded = joblib.load(tmp_path / "t.joblib")
    assert np.array_equal(loaded.predict_proba(X_test), expected)
    assert loaded.build_attack().eps == 0.2


def test_grid_search_over_eps_with_a_robust_scorer(digits):
    X_train, _, y_train, _ = digits
    search = GridSearchCV(make_teacher(attack="fgsm", max_epochs=2), {"eps": [0.1, 0.3]},
                          scoring=make_robust_scorer("fgsm", eps=0.1, random_state=0), cv=2)
    search.fit(X_train[:400], y_train[:400])
    check_search_scores(search, X_train[:400], y_train[:400])
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_robust_accuracy_callback_records_every_epoch(digits):
    X_train, _, y_train, _ = digits
    cb = RobustAccuracy(X_train[300:400], y_train[300:400], attack="fgsm", eps=0.2, name="fgsm_acc")
    net = make_teacher(attack="fgsm", max_epochs=3, callbacks=[cb]).fit(X_train[:300], y_train[:300])
    history = net.history[:, "fgsm_acc"]
    assert len(history) == 3 and all(0 <= v <= 1 for v in history)
    assert history[-1] == robust_score(net, X_train[300:400], y_train[300:400], "fgsm", eps=0.2)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(attack="pgdx"), ValueError, r"Unknown attack 'pgdx'; known attacks are \["),
    (dict(eps=0.0), ValueError, r"eps must be > 0 for adversarial training; got eps=0.0"),
    (dict(eps=-1), ValueError, r"eps must be a finite number >= 0; got eps=-1"),
    (dict(adv_ratio=1.5), ValueError, r"adv_ratio must be a finite number in \[0, 1\]; got adv_ratio=1.5"),
    (dict(attack__steps=3), TypeError, r"unexpected parameter\(s\) \['steps'\]"),
    (dict(random_state=-3), ValueError, r"random_state must be None or a non-negative int; got random_state=-3"),
])
def test_bad_parameters_fail_before_training(digits, kwargs, exc, match):
    X_train, _, y_train, _ = digits
    with pytest.raises(exc, match=match):
        make_teacher(**kwargs).fit(X_train[:50], y_train[:50])


def test_bad_data_fails_with_a_clear_error(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=r"len\(X\)=50, len\(y\)=49"):
        make_teacher().fit(X_train[:50], y_train[:49])
    with pytest.raises(ValueError, match=r"outside the attack's input range"):
        make_teacher().fit(X_train[:50] * 16, y_train[:50])


def test_pool_trains_one_teacher_per_attack_in_parallel_reproducibly(digits):
    X_train, X_test, y_train, _ = digits
    template = make_teacher(max_epochs=2)
    pool = TeacherPool(template, attacks=["fgsm", "pgd", "mim"], n_jobs=2, random_state=0)
    pool.fit(X_train[:300], y_train[:300])
    assert [t.attack for t in pool.teachers_] == ["fgsm", "pgd", "mim"]
    seeds = [t.random_state for t in pool.teachers_]
    assert len(set(seeds)) == 3 and template.random_state == 0 and not hasattr(template, "module_")
    again = clone(pool).fit(X_train[:300], y_train[:300])
    serial = clone(pool).set_params(n_jobs=1).fit(X_train[:300], y_train[:300])
    for a, b, c in zip(pool.teachers_, again.teachers_, serial.teachers_):
        assert all(torch.equal(p, q) for p, q in zip(a.module_.parameters(), b.module_.parameters()))
        # in one process torch uses both cores, and float sums in another order differ in the last bits
        assert all(torch.allclose(p, q, atol=1e-4) for p, q in zip(a.module_.parameters(), c.module_.parameters()))
    proba = pool.predict_proba(X_test)
    assert np.allclose(proba, np.mean([t.predict_proba(X_test) for t in pool.teachers_], axis=0))
    assert np.array_equal(pool.predict(X_test), proba.argmax(1))


@pytest.mark.parametrize("attacks, exc, match", [
    ([], ValueError, "at least one attack"),
    (["fgsm", "nope"], ValueError, r"Unknown attack in attacks 'nope'"),
    ([("pgd", 0.0)], ValueError, r"a teacher's budget must be finite and > 0; got \('pgd', 0.0\)"),
    ([("pgd", 0.1, 2)], ValueError, r"attacks holds attack names or \(name, eps\) pairs"),
    ([("nope", 0.1)], ValueError, r"Unknown attack in attacks 'nope'"),
])
def test_pool_rejects_bad_attack_lists(digits, attacks, exc, match):
    X_train, _, y_train, _ = digits
    with pytest.raises(exc, match=match):
        TeacherPool(make_teacher(), attacks=attacks).fit(X_train[:20], y_train[:20])


def test_pool_needs_a_teacher_template(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(TypeError, match="teacher must be an AdversarialTeacher; got SmallCNN"):
        TeacherPool(SmallCNN()).fit(X_train[:20], y_train[:20])


def test_pool_passes_template_attack_parameters_only_to_attacks_that_take_them(digits):
    X_train, _, y_train, _ = digits
    template = make_teacher(max_epochs=1, attack__nb_iter=3)
    pool = TeacherPool(template, attacks=["fgsm", "pgd"], random_state=0).fit(X_train[:100], y_train[:100])
    fgsm, pgd = pool.teachers_
    assert "attack__nb_iter" not in fgsm.get_params() and pgd.get_params()["attack__nb_iter"] == 3
    assert pgd.build_attack().nb_iter == 3


def test_pool_of_threat_models_and_budgets(digits):
    """A pool may mix norms and budgets; an L2 teacher's robust selection uses L2 PGD at its radius."""
    from skorch.dataset import ValidSplit

    from robustkd.callbacks import RobustEarlyStopping

    X_train, X_test, y_train, y_test = digits
    template = make_teacher(max_epochs=2, eps=0.1, train_split=ValidSplit(5, stratified=True),
                            callbacks=[RobustEarlyStopping(max_samples=64, attack_params={"nb_iter": 3})])
    pool = TeacherPool(template, attacks=["fgsm_rs", ("pgd_l2", 1.0), ("nfgsm", 0.2)],
                       random_state=0).fit(X_train[:300], y_train[:300])
    assert [(t.attack, t.eps) for t in pool.teachers_] == [("fgsm_rs", 0.1), ("pgd_l2", 1.0), ("nfgsm", 0.2)]
    linf, l2 = pool.teachers_[0].history[-1], pool.teachers_[1].history[-1]
    assert linf["valid_fgsm_acc"] >= 0 and np.isnan(l2["valid_fgsm_acc"])
    module = pool.teachers_[1].module_
    _, X_valid, _, y_valid = digits   # the recorded score is L2 PGD at radius 1.0, not L-inf PGD at "1.0"
    assert l2["valid_robust_acc"] > 0.0 and robust_score(module, X_valid[:64], y_valid[:64], "pgd", eps=1.0) == 0.0
