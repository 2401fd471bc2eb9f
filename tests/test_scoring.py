import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FunctionTransformer, Pipeline

from robustkd.attacks import get_attack
from robustkd import (make_robust_scorer, plot_robustness_curves, robust_mask, robust_score,
                              robustness_report)

from robustkd import AdversarialTeacher, SmallCNN

from conftest import check_search_scores, make_net


def test_standard_net_is_accurate_and_pgd_breaks_it(standard_net, digits):
    _, X_test, _, y_test = digits
    clean = robust_score(standard_net, X_test, y_test, eps=0)
    assert clean > 0.9
    assert clean == pytest.approx(standard_net.score(X_test, y_test))
    assert robust_score(standard_net, X_test, y_test, "pgd", eps=0.3, random_state=0) < 0.1


def test_accuracy_is_non_increasing_in_eps(standard_net, digits):
    _, X_test, _, y_test = digits
    scores = [robust_score(standard_net, X_test, y_test, "pgd", eps=e, random_state=0)
              for e in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert all(a >= b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] - scores[-1] > 0.8


def test_worst_case_is_per_sample_and_no_better_than_each_attack(standard_net, digits):
    _, X_test, _, y_test = digits
    pgd = get_attack("pgd", standard_net.module_, eps=0.1, rand_init=False)
    fgsm = robust_mask(standard_net, X_test, y_test, "fgsm", eps=0.1)
    alone = robust_mask(standard_net, X_test, y_test, pgd)
    both = robust_mask(standard_net, X_test, y_test, ["fgsm", pgd], eps=0.1)
    assert both.dtype == bool and both.shape == (len(X_test),)
    assert not (both & ~fgsm).any() and not (both & ~alone).any()
    assert (both != fgsm).any(), "PGD must find examples FGSM misses"


def test_inputs_and_model_state_are_untouched(standard_net, digits):
    _, X_test, _, y_test = digits
    X, y = X_test[:50].copy(), y_test[:50].copy()
    Xt = torch.from_numpy(X.copy())
    grads = [None if p.grad is None else p.grad.clone() for p in standard_net.module_.parameters()]
    standard_net.module_.train()
    robust_score(standard_net, X, y, ["fgsm", "pgd"], eps=0.2)
    robust_score(standard_net, Xt, torch.from_numpy(y), "pgd", eps=0.2)
    assert np.array_equal(X, X_test[:50]) and np.array_equal(y, y_test[:50])
    assert torch.equal(Xt, torch.from_numpy(X_test[:50]))
    assert all(m.training for m in standard_net.module_.modules())
    for p, g in zip(standard_net.module_.parameters(), grads):
        assert p.requires_grad and (p.grad is None if g is None else torch.equal(p.grad, g))
    standard_net.module_.eval()


def test_random_state_reproduces_without_touching_global_rng(standard_net, digits):
    _, X_test, _, y_test = digits
    state = torch.get_rng_state()
    a = robust_mask(standard_net, X_test, y_test, "pgd", eps=0.1, random_state=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = robust_mask(standard_net, X_test, y_test, "pgd", eps=0.1, random_state=3)
    assert np.array_equal(a, b)


def test_module_net_and_pipeline_give_the_same_score(standard_net, digits):
    X_train, X_test, y_train, y_test = digits
    by_net = robust_score(standard_net, X_test, y_test, "fgsm", eps=0.1)
    assert robust_score(standard_net.module_, X_test, y_test, "fgsm", eps=0.1) == by_net
    flatten = FunctionTransformer(lambda X: X.reshape(len(X), -1))
    pipe = Pipeline([("flatten", flatten), ("net", make_net(max_epochs=10))]).fit(X_train, y_train)
    clean = robust_score(pipe, X_test, y_test, eps=0)
    assert clean == pytest.approx(pipe.score(X_test, y_test)) and clean > 0.85
    assert robust_score(pipe, X_test, y_test, "pgd", eps=0.2, random_state=0) < clean - 0.5


def test_grid_search_with_a_robust_scorer(digits):
    X_train, _, y_train, _ = digits
    scorer = make_robust_scorer("fgsm", eps=0.1, random_state=0)
    net = AdversarialTeacher(SmallCNN, attack=None, module__input_shape=(1, 8, 8), max_epochs=3, train_split=None,
                             verbose=0, random_state=0)
    search = GridSearchCV(net, {"lr": [1e-3, 3e-3]}, scoring=scorer, cv=2).fit(X_train, y_train)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
    check_search_scores(search, X_train, y_train)


def test_report_has_every_cell_and_worst_case(standard_net, digits):
    _, X_test, _, y_test = digits
    rows = robustness_report(standard_net, X_test[:200], y_test[:200], attacks=["fgsm", "pgd"], eps=[0.1, 0.2],
                             random_state=0)
    assert [(r["attack"], r["eps"]) for r in rows] == [
        ("clean", 0.0), ("fgsm", 0.1), ("pgd", 0.1), ("worst_case", 0.1),
        ("fgsm", 0.2), ("pgd", 0.2), ("worst_case", 0.2)]
    acc = {(r["attack"], r["eps"]): r["accuracy"] for r in rows}
    for e in (0.1, 0.2):
        assert acc[("worst_case", e)] <= min(acc[("fgsm", e)], acc[("pgd", e)])
        assert acc[("pgd", e)] <= acc[("clean", 0.0)]
    assert acc[("pgd", 0.2)] < acc[("pgd", 0.1)]
    frame = robustness_report(standard_net, X_test[:50], y_test[:50], attacks=["fgsm"], eps=[0.1], as_frame=True)
    assert list(frame.columns) == ["attack", "eps", "accuracy", "n_samples"] and len(frame) == 3


def test_the_default_report_includes_autoattack_in_the_worst_case(standard_net, digits):
    _, X_test, _, y_test = digits
    rows = robustness_report(standard_net, X_test[:40], y_test[:40], eps=[0.1], random_state=0, checks=None)
    acc = {r["attack"]: r["accuracy"] for r in rows}
    assert list(acc) == ["clean", "fgsm", "pgd", "autoattack", "worst_case"]
    assert acc["worst_case"] <= acc["autoattack"] <= acc["pgd"] + 0.05 and acc["autoattack"] < acc["clean"]


def test_plot_draws_one_curve_per_attack_and_per_method(standard_net, digits):
    import matplotlib

    matplotlib.use("Agg")
    _, X_test, _, y_test = digits
    rows = robustness_report(standard_net, X_test[:60], y_test[:60], attacks=["fgsm", "pgd"], eps=[0.1, 0.2])
    ax = plot_robustness_curves(rows)
    assert sorted(line.get_label() for line in ax.get_lines()) == ["fgsm", "pgd", "worst_case"]
    assert list(ax.get_lines()[0].get_xdata()) == [0.0, 0.1, 0.2]
    tagged = [dict(r, method=m) for m in ("a", "b") for r in rows]
    ax = plot_robustness_curves(tagged, group_by="method")
    assert sorted(line.get_label() for line in ax.get_lines()) == ["a", "b"]


@pytest.mark.parametrize("change, exc, match", [
    (dict(attack="nope"), ValueError, r"Unknown attack 'nope'; known attacks are \["),
    (dict(eps=-0.5), ValueError, r"eps must be a finite number >= 0; got eps=-0.5"),
    (dict(y=np.zeros(3, dtype=int)), ValueError, r"X and y have different lengths: len\(X\)=20, len\(y\)=3"),
    (dict(y=np.full(20, 12)), ValueError, r"y holds labels \[12\] outside the model's classes 0..9"),
    (dict(X=np.full((20, 1, 8, 8), 2.0, dtype=np.float32)), ValueError, r"outside the attack's input range"),
    (dict(X=np.full((20, 1, 8, 8), np.nan, dtype=np.float32)), ValueError, r"X contains NaN"),
    (dict(attack=[]), ValueError, r"at least one attack"),
    (dict(batch_size=0), ValueError, r"batch_size must be an integer >= 1; got batch_size=0"),
    (dict(model="net"), TypeError, r"model must be a torch.nn.Module"),
])
def test_bad_input_gets_a_clear_error(standard_net, digits, change, exc, match):
    _, X_test, _, y_test = digits
    kwargs = dict(model=standard_net, X=X_test[:20], y=y_test[:20], attack="pgd", eps=0.1)
    kwargs.update(change)
    with pytest.raises(exc, match=match):
        robust_score(**kwargs)


def test_labels_outside_a_plain_module_outputs(standard_net, digits):
    _, X_test, _, _ = digits
    with pytest.raises(ValueError, match=r"outside the model's classes 0..9 \(it has 10 outputs\)"):
        robust_score(standard_net.module_, X_test[:2], [0, 10], eps=0)


def test_unfitted_net_is_rejected(digits):
    from sklearn.exceptions import NotFittedError

    _, X_test, _, y_test = digits
    with pytest.raises(NotFittedError, match="not fitted yet"):
        robust_score(make_net(), X_test, y_test)


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_a_sample_gets_the_same_random_start_alone_in_a_cascade_or_another_batch(standard_net, digits, eps):
    _, X_test, _, y_test = digits
    alone = robust_mask(standard_net, X_test, y_test, "pgd", eps=eps, random_state=0)
    cascade = robust_mask(standard_net, X_test, y_test, ["fgsm", "pgd", "cw_linf"], eps=eps, random_state=0)
    small_batches = robust_mask(standard_net, X_test, y_test, "pgd", eps=eps, random_state=0, batch_size=7)
    subset = robust_mask(standard_net, X_test[:100], y_test[:100], "pgd", eps=eps, random_state=0)
    assert not (cascade & ~alone).any(), "the worst case must never be above one of its attacks"
    assert np.array_equal(alone, small_batches) and np.array_equal(alone[:100], subset)
    report = robustness_report(standard_net, X_test, y_test, attacks=["fgsm", "pgd"], eps=[eps], random_state=0,
                               checks=None)
    cell = {r["attack"]: r["accuracy"] for r in report}
    assert cell["pgd"] == alone.mean() and cell["worst_case"] <= min(cell["fgsm"], cell["pgd"])
    restarts = robust_mask(standard_net, X_test, y_test, [get_attack("pgd", standard_net.module_, eps=eps)] * 2,
                           random_state=0)
    assert not (restarts & ~alone).any() and restarts.sum() <= alone.sum()


def test_identical_attacks_in_a_list_are_restarts_with_new_random_starts():
    from robustkd.attacks import sample_seeds

    assert not np.array_equal(sample_seeds(0, np.arange(5), salt=0), sample_seeds(0, np.arange(5), salt=1))
    assert np.array_equal(sample_seeds(3, [7, 8]), sample_seeds(3, np.arange(10))[[7, 8]])
    assert len(set(sample_seeds(0, np.arange(1000)).tolist())) == 1000


# ------------------------------------------------------------------ per-attack budgets: union threat models
def test_a_union_of_threat_models_is_the_per_sample_and_of_its_members(teacher_pool, digits):
    _, X_test, _, y_test = digits
    model = teacher_pool.teachers_[1]
    X, y = X_test[:200], y_test[:200]
    linf = robust_mask(model, X, y, "pgd", eps=0.1, random_state=0)
    l2 = robust_mask(model, X, y, "pgd_l2", eps=0.5, random_state=0)
    union = robust_mask(model, X, y, [("pgd", 0.1), ("pgd_l2", 0.5)], random_state=0)
    assert np.array_equal(union, linf & l2)
    assert union.sum() < min(linf.sum(), l2.sum()), "each threat model breaks samples the other does not"
    # a bare name takes eps, a pair keeps its own budget; a single pair is one attack
    mixed = robust_mask(model, X, y, ["pgd", ("pgd_l2", 0.5)], eps=0.1, random_state=0)
    assert np.array_equal(mixed, union)
    assert robust_score(model, X, y, ("pgd", 0.1), random_state=0) == float(linf.mean())
    # budget 0 leaves that attack out
    assert np.array_equal(robust_mask(model, X, y, [("pgd", 0.0), ("pgd_l2", 0.5)], random_state=0), l2)
    scorer = make_robust_scorer([("pgd", 0.1), ("pgd_l2", 0.5)], random_state=0)
    assert scorer(model, X, y) == float(union.mean())
    assert repr(scorer) == "make_robust_scorer(attack=[('pgd', 0.1), ('pgd_l2', 0.5)], eps=None, random_state=0)"


@pytest.mark.parametrize("attack, exc, match", [
    ([("pgd", 0.1, 3)], ValueError, r"an attack with its own budget is a pair \(name, eps\)"),
    ([("pgd", -0.1)], ValueError, "eps must be"),
    ([(get_attack, 0.1)], TypeError, "a per-attack budget goes with an attack name"),
    ([("nfgsm", 0.1)], ValueError, "training attack"),
])
def test_bad_per_attack_budgets_get_a_clear_error(standard_net, digits, attack, exc, match):
    _, X_test, _, y_test = digits
    with pytest.raises(exc, match=match):
        robust_score(standard_net, X_test[:10], y_test[:10], attack)
    with pytest.raises(exc, match=match):
        make_robust_scorer(attack)


def test_report_union_row_reuses_its_cells_and_runs_the_others(teacher_pool, digits):
    _, X_test, _, y_test = digits
    model = teacher_pool.teachers_[1]
    X, y = X_test[:200], y_test[:200]
    rows = robustness_report(model, X, y, attacks=["fgsm", "pgd"], eps=[0.1, 0.2], random_state=0, checks="fast",
                             union=[("pgd", 0.1), ("pgd_l2", 0.5)])
    union = [r for r in rows if r["attack"] == "union"]
    assert len(union) == 1 and union[0]["eps"] is None and union[0]["threat_model"] == "pgd@0.1+pgd_l2@0.5"
    expected = robust_score(model, X, y, [("pgd", 0.1), ("pgd_l2", 0.5)], random_state=0)
    assert union[0]["accuracy"] == pytest.approx(expected)
    pgd = next(r["accuracy"] for r in rows if r["attack"] == "pgd" and r["eps"] == 0.1)
    assert union[0]["accuracy"] < pgd
    plot_robustness_curves(rows)          # a union row has no eps: plots leave it out
    with pytest.raises(ValueError, match="union must be a non-empty list of"):
        robustness_report(model, X, y, attacks=["fgsm"], eps=[0.1], union=["pgd"], checks=None)


@pytest.mark.parametrize("attack, params", [("pgd", {}), (["fgsm", "bim"], {}), ("apgd", dict(n_iter=10)),
                                            ("spsa", dict(nb_iter=2, nb_sample=8))])
def test_attacking_in_threads_gives_the_same_masks_and_restores_torch_threads(standard_net, digits, attack, params):
    # samples are attacked in threads, one torch thread each; an attack drawing from torch's global RNG (SPSA)
    # runs in one thread, so that random_state still gives the same result
    _, X_test, _, y_test = digits
    X, y = X_test[:90], y_test[:90]
    threads = torch.get_num_threads()
    alone = robust_mask(standard_net, X, y, attack, eps=0.1, random_state=0, batch_size=16, **params)
    together = robust_mask(standard_net, X, y, attack, eps=0.1, random_state=0, n_jobs=2, batch_size=16, **params)
    assert np.array_equal(alone, together)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_bad_n_jobs_is_refused_by_name(standard_net, digits, n_jobs):
    _, X_test, _, y_test = digits
    with pytest.raises(ValueError, match=r"n_jobs must be an integer >= 1 or an integer <= -1; got n_jobs="):
        robust_score(standard_net, X_test[:4], y_test[:4], eps=0.1, n_jobs=n_jobs)
