"""AutoAttack's attacks: APGD-CE, APGD-DLR, APGD-T and their cascade, against PGD and the original code."""
import numpy as np
import pytest
import torch

from robustkd import get_attack, robust_mask, robust_score
from robustkd.attacks import APGD
from robustkd.attacks._apgd import dlr_loss, targeted_dlr_loss

FAST = {"n_iter": 20}


def test_dlr_losses_match_their_definitions():
    z = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 2])
    # sample 0 is right: -(3 - 1) / (3 - 0.5); sample 1 is wrong: -(1 - 2) / (2 - 0.5)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-2 / 2.5, 1 / 1.5]))
    t = torch.tensor([1, 3])
    # denominators: z_pi1 - (z_pi3 + z_pi4) / 2 = 3 - (0.5 - 1) / 2 and 2 - (0.5 + 0) / 2
    assert torch.allclose(targeted_dlr_loss(z, y, t), torch.tensor([-(3 - 1) / 3.25, -(1 - 0.5) / 1.75]))
    assert torch.allclose(dlr_loss(z * 7 + 3, y), dlr_loss(z, y))        # shift and scale invariant


@pytest.mark.parametrize("name", ["apgd_ce", "apgd_dlr", "apgd_t"])
def test_apgd_is_at_least_as_strong_as_pgd_and_a_robust_model_holds(standard_net, teacher_pool, digits, name):
    _, X_test, _, y_test = digits
    X, y = X_test[:200], y_test[:200]
    params = dict(FAST, n_target_classes=3) if name == "apgd_t" else FAST
    clean = robust_score(standard_net, X, y, eps=0)
    apgd = robust_score(standard_net, X, y, name, eps=0.1, random_state=0, **params)
    pgd = robust_score(standard_net, X, y, "pgd", eps=0.1, random_state=0)
    assert apgd <= clean and apgd <= pgd + 0.02, (apgd, pgd)
    robust_teacher = teacher_pool.teachers_[1]               # PGD-trained at eps=0.2
    assert robust_score(robust_teacher, X, y, name, eps=0.2, random_state=0, **params) > \
        robust_score(standard_net, X, y, name, eps=0.2, random_state=0, **params) + 0.2


def test_the_apgd_cascade_is_never_above_its_members(standard_net, digits):
    _, X_test, _, y_test = digits
    X, y = X_test[:150], y_test[:150]
    kw = dict(eps=0.1, random_state=0, n_iter=10, n_target_classes=3)
    cascade = robust_mask(standard_net, X, y, "apgd", **kw)
    ce = robust_mask(standard_net, X, y, "apgd_ce", n_iter=10, eps=0.1, random_state=0)
    t = robust_mask(standard_net, X, y, "apgd_t", **kw)
    assert not (cascade & ~ce).any() and not (cascade & ~t).any()
    assert np.array_equal(cascade, robust_mask(standard_net, X, y, "apgd", batch_size=17, **kw))


def test_apgd_t_needs_four_classes():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with pytest.raises(ValueError, match="needs at least 4 classes; the model has 3"):
        get_attack("apgd_t", model, eps=0.1).perturb(torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))


@pytest.mark.parametrize("loss, norm", [("ce", "Linf"), ("dlr", "Linf"), ("ce", "L2")])
def test_apgd_matches_the_original_autoattack_code(standard_net, digits, loss, norm):
    autopgd = pytest.importorskip("pyautoattack.autopgd_base")
    _, X_test, _, y_test = digits
    x, y = torch.from_numpy(X_test[:300]), torch.from_numpy(y_test[:300])
    eps = 0.1 if norm == "Linf" else 1.0
    module = standard_net.module_.eval()
    ours, ref = [], []
    for seed in range(2):
        adv = autopgd.APGDAttack(module, n_iter=30, norm=norm, eps=eps, loss=loss, seed=seed, device="cpu").perturb(x, y)
        with torch.no_grad():
            ref.append((module(adv).argmax(1) == y).float().mean().item())
        name = f"apgd_{loss}" + ("_l2" if norm == "L2" else "")
        ours.append(robust_score(module, x, y, name, eps=eps, n_iter=30, random_state=seed))
    assert abs(np.mean(ours) - np.mean(ref)) <= 0.02, (ours, ref)


def test_apgd_is_reproducible_and_leaves_the_global_rng_alone(standard_net, digits):
    _, X_test, _, y_test = digits
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a = robust_mask(standard_net, X_test[:100], y_test[:100], "apgd_ce", eps=0.1, n_iter=10, random_state=3)
    assert torch.equal(torch.rand(2), expected)
    b = robust_mask(standard_net, X_test[:100], y_test[:100], "apgd_ce", eps=0.1, n_iter=10, random_state=3)
    assert np.array_equal(a, b)
    assert repr(get_attack("apgd_ce", standard_net.module_, eps=0.1)).startswith("APGD(eps=0.1, norm='linf'")
    assert isinstance(get_attack("apgd_dlr_l2", standard_net.module_, eps=0.5), APGD)


@pytest.mark.parametrize("attack", ["pgd", "apgd_ce", ["fgsm", "pgd"]])
def test_scoring_without_labels_is_the_stability_of_the_models_own_predictions(standard_net, digits, attack):
    from robustkd import make_robust_scorer, robustness_report

    _, X, _, y_test = digits
    assert standard_net.score(X, y_test) < 1           # so stability and accuracy differ
    kw = dict(eps=0.1, random_state=0, **({"n_iter": 10} if attack == "apgd_ce" else {}))
    unlabeled = robust_score(standard_net, X, attack=attack, **kw)
    assert unlabeled == robust_score(standard_net, X, standard_net.predict(X), attack=attack, **kw)
    # a sample right and robust under its true label is stable under its (equal) predicted label
    accurate = robust_mask(standard_net, X, y_test, attack=attack, **kw)
    assert not (accurate & ~robust_mask(standard_net, X, attack=attack, **kw)).any()
    assert robust_score(standard_net, X, eps=0) == 1.0 > robust_score(standard_net, X, y_test, eps=0)
    assert make_robust_scorer(attack, **kw)(standard_net, X, None) == unlabeled
    rows = robustness_report(standard_net, X, attacks=["fgsm"], eps=[0.1], checks=None)
    assert rows[0] == {"attack": "clean", "eps": 0.0, "accuracy": 1.0, "n_samples": len(X)}


def test_square_matches_the_original_code_and_does_not_depend_on_the_batch(standard_net, digits):
    _, X_test, _, y_test = digits
    X, y = X_test[:300], y_test[:300]
    kw = dict(eps=0.1, n_queries=200, random_state=0)
    mask = robust_mask(standard_net, X, y, "square", **kw)
    assert np.array_equal(mask, robust_mask(standard_net, X, y, "square", batch_size=37, **kw))
    assert mask.mean() <= robust_score(standard_net, X, y, eps=0)
    square = pytest.importorskip("pyautoattack.square")
    module = standard_net.module_.eval()
    x_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    ref = []
    for seed in range(2):
        adv = square.SquareAttack(module, norm="Linf", n_queries=200, eps=0.1, seed=seed, device="cpu",
                                  resc_schedule=False).perturb(x_t, y_t)     # as AutoAttack runs it
        with torch.no_grad():
            ref.append((module(adv).argmax(1) == y_t).float().mean().item())
    ours = [mask.mean(), robust_score(standard_net, X, y, "square", eps=0.1, n_queries=200, random_state=1)]
    assert abs(np.mean(ours) - np.mean(ref)) <= 0.02, (ours, ref)


def test_l2_square_matches_the_original_code_and_stays_in_the_ball(standard_net, digits):
    _, X_test, _, y_test = digits
    X, y = X_test[:150], y_test[:150]
    kw = dict(eps=1.0, n_queries=100, random_state=0)
    mask = robust_mask(standard_net, X, y, "square_l2", **kw)
    assert np.array_equal(mask, robust_mask(standard_net, X, y, "square_l2", batch_size=37, **kw))
    module = standard_net.module_.eval()
    x_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    adv = get_attack("square_l2", module, eps=1.0, n_queries=100).perturb(x_t, y_t, sample_seeds=np.arange(150))
    assert (adv - x_t).flatten(1).norm(dim=1).max() <= 1.0 + 1e-4 and adv.min() >= 0 and adv.max() <= 1
    square = pytest.importorskip("pyautoattack.square")
    ref = []
    for seed in range(2):
        adv = square.SquareAttack(module, norm="L2", n_queries=100, eps=1.0, seed=seed, device="cpu").perturb(x_t, y_t)
        with torch.no_grad():
            ref.append((module(adv).argmax(1) == y_t).float().mean().item())
    ours = [mask.mean(), robust_score(standard_net, X, y, "square_l2", eps=1.0, n_queries=100, random_state=1)]
    assert abs(np.mean(ours) - np.mean(ref)) <= 0.03, (ours, ref)
    assert np.mean(ours) < robust_score(standard_net, X, y, eps=0) - 0.2       # it does break the standard net


def test_square_needs_images():
    with pytest.raises(ValueError, match=r"Square needs images of shape \(n, C, H, W\)"):
        get_attack("square", torch.nn.Linear(4, 3), eps=0.1).perturb(torch.rand(2, 4), torch.tensor([0, 1]))


def test_fab_t_matches_the_original_code_exactly(standard_net, digits):
    fab_pt = pytest.importorskip("pyautoattack.fab_pt")
    _, X_test, _, y_test = digits
    x, y = torch.from_numpy(X_test[:150]), torch.from_numpy(y_test[:150])
    module = standard_net.module_.eval()
    ref = fab_pt.FABAttack_PT(module, norm="Linf", n_restarts=1, n_iter=20, eps=0.1, seed=0, targeted=True,
                              n_target_classes=3, device="cpu").perturb(x, y)
    with torch.no_grad():
        ref_robust = (module(ref).argmax(1) == y) | ((ref - x).flatten(1).abs().max(1)[0] > 0.1 + 1e-6)
    ours = robust_mask(module, x, y, "fab_t", eps=0.1, n_iter=20, n_target_classes=3)
    assert np.array_equal(ours, ref_robust.numpy())


def test_autoattack_is_never_above_its_members_and_matches_the_original(standard_net, digits):
    _, X_test, _, y_test = digits
    X, y = X_test[:120], y_test[:120]
    kw = dict(eps=0.1, random_state=0, n_iter=20, n_target_classes=3, n_queries=200)
    suite = robust_mask(standard_net, X, y, "autoattack", **kw)
    for member, params in (("apgd_ce", {"n_iter": 20}), ("apgd_t", {"n_iter": 20, "n_target_classes": 3}),
                           ("fab_t", {"n_iter": 20, "n_target_classes": 3}), ("square", {"n_queries": 200})):
        alone = robust_mask(standard_net, X, y, member, eps=0.1, random_state=0, **params)
        assert not (suite & ~alone).any(), member
    autoattack = pytest.importorskip("pyautoattack")
    module = standard_net.module_.eval()
    aa = autoattack.AutoAttack(module, norm="Linf", eps=0.1, version="standard", seed=0, device="cpu")
    aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = 20
    aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = 3
    aa.square.n_queries = 200
    aa.logger.disabled = True
    adv, _ = aa.run_standard_evaluation(torch.from_numpy(X), torch.from_numpy(y), batch_size=500)
    with torch.no_grad():
        reference = (module(adv).argmax(1).numpy() == y).mean()
    assert abs(suite.mean() - reference) <= 0.02, (suite.mean(), reference)


@pytest.mark.parametrize("name, params", [("apgd", dict(n_iter=10, n_target_classes=3)),
                                          ("square", dict(n_queries=100)),
                                          ("autoattack", dict(n_iter=10, n_target_classes=3, n_queries=100))])
def test_an_eps_grid_run_as_one_gives_each_budget_its_chained_result(teacher_pool, digits, name, params):
    # the report runs an attack over the whole grid at once (one budget per sample); the masks must be
    # those of the attack run at each eps apart, chained: robust at eps_k = robust at eps_(k-1) and survives eps_k
    from robustkd import robustness_report

    _, X_test, _, y_test = digits
    X, y = X_test[:120], y_test[:120]
    net = teacher_pool.teachers_[1]
    grid = [0.05, 0.1, 0.2]
    rows = robustness_report(net, X, y, attacks=[name], eps=grid, random_state=0, checks=None,
                             attack_params={name: params})
    chained = robust_mask(net, X, y, eps=0)
    for e in grid:
        chained = chained & robust_mask(net, X, y, name, eps=e, random_state=0, **params)
        got = next(r["accuracy"] for r in rows if r["attack"] == name and r["eps"] == e)
        assert got == pytest.approx(chained.mean()), (e, got, chained.mean())


def test_apgd_and_square_with_one_budget_per_sample_equal_runs_at_each_budget(standard_net, digits):
    from robustkd.attacks import perturb, sample_seeds

    _, X_test, _, y_test = digits
    x, y = torch.from_numpy(X_test[:40]), torch.from_numpy(y_test[:40])
    module = standard_net.module_
    budgets = torch.tensor([0.05, 0.2] * 20)
    seeds = sample_seeds(0, range(40))
    for name, params in (("apgd_t", dict(n_iter=10, n_target_classes=2)), ("square", dict(n_queries=50)),
                         ("fab_t", dict(n_iter=10, n_target_classes=2))):
        attack = get_attack(name, module, eps=0.2, **params)
        together = perturb(attack, x, y, sample_seeds=seeds, eps=budgets)
        assert ((together - x).abs().flatten(1).max(1)[0] <= budgets + 1e-6).all()
        for e in (0.05, 0.2):
            rows = (budgets == e).nonzero().squeeze(1)
            alone = perturb(get_attack(name, module, eps=e, **params), x[rows], y[rows],
                            sample_seeds=seeds[rows.numpy()])
            assert torch.allclose(together[rows], alone, atol=1e-6), (name, e)


def test_one_budget_per_sample_is_refused_by_attacks_that_do_not_take_it(standard_net):
    from robustkd.attacks import perturb

    attack = get_attack("pgd", standard_net.module_, eps=0.1)
    with pytest.raises(ValueError, match="does not take one budget per sample"):
        perturb(attack, torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), eps=torch.full((4,), 0.1))
    apgd = get_attack("apgd_ce", standard_net.module_, eps=0.1)
    with pytest.raises(ValueError, match=r"eps must be one budget per sample, of shape \(4,\); got shape \(3,\)"):
        perturb(apgd, torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), eps=torch.full((3,), 0.1))


def _linear_model():
    # logits z = W u + b on the flattened 1x2x2 input; at u = 0.5: z = (1, 0.9, 0, -5). Class 1 is the most
    # likely after the true class 0 but its boundary is far in L-inf (||w0 - w1||_1 = 0.04, margin 0.1: 2.5
    # away); class 2 is nearer (margin 1, ||w0 - w2||_1 = 4: 0.25 away)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0] * 4, [0.01] * 4, [1.0] * 4, [0.0] * 4]))
        model[1].bias.copy_(torch.tensor([1.0, 0.88, -2.0, -5.0]))
    return model


def test_linear_target_order_attacks_the_nearest_boundary_first():
    model = _linear_model()
    x, y = torch.full((1, 1, 2, 2), 0.5), torch.tensor([0])
    by_logits = APGD(model, 0.3, loss="dlr-targeted", n_target_classes=1, n_iter=20)
    by_distance = APGD(model, 0.3, loss="dlr-targeted", n_target_classes=1, n_iter=20, target_order="linear")
    with torch.no_grad():
        assert model(by_logits.perturb(x, y)).argmax(1).item() == 0          # class 1 is out of reach
        assert model(by_distance.perturb(x, y)).argmax(1).item() == 2        # class 2 is 0.25 away
    with pytest.raises(ValueError, match='target_order must be "logits" or "linear"; got target_order=\'dlr\''):
        APGD(model, 0.3, target_order="dlr")
