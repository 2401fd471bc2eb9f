"""Fast adversarial training (FGSM-RS, N-FGSM), the FGSM warning, and robust early stopping."""
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from robustkd import AdversarialTeacher, RobustAccuracy, SmallCNN, TeacherPool, robust_score, robustness_report
from robustkd.attacks import get_attack, perturb
from robustkd.callbacks import RobustEarlyStopping
from robustkd.exceptions import RobustKDWarning


def teacher(**kwargs):
    params = dict(module__input_shape=(1, 8, 8), eps=0.1, max_epochs=2, batch_size=32, train_split=None, verbose=0,
                  random_state=0)
    params.update(kwargs)
    return AdversarialTeacher(SmallCNN, **params)


@pytest.mark.parametrize("name, bound", [("fgsm_rs", 1.0), ("nfgsm", 3.0)])
def test_fast_attacks_have_their_published_budgets_and_per_sample_starts(standard_net, digits, name, bound):
    _, X_test, _, y_test = digits
    x, y = torch.from_numpy(X_test[:64]), torch.from_numpy(y_test[:64])
    module = standard_net.module_
    attack = get_attack(name, module, eps=0.1)
    seeds = np.arange(64) * 7 + 1
    adv = perturb(attack, x, y, sample_seeds=seeds)
    linf = (adv - x).flatten(1).abs().max(1).values
    assert linf.max() <= 0.1 * bound + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    if name == "nfgsm":
        assert linf.max() > 0.1 + 1e-3, "N-FGSM does not project back to the eps-ball"
    # sample i's start depends on its seed only: the same alone as in the batch
    assert torch.equal(perturb(attack, x[5:9], y[5:9], sample_seeds=seeds[5:9]), adv[5:9])
    assert robust_score(standard_net, X_test[:200], y_test[:200], "fgsm_rs", eps=0.1, random_state=0) < \
        robust_score(standard_net, X_test[:200], y_test[:200], eps=0)


def test_nfgsm_is_a_training_attack_only(standard_net, digits):
    _, X_test, _, y_test = digits
    X, y = X_test[:20], y_test[:20]
    for call in (lambda: robust_score(standard_net, X, y, "nfgsm", eps=0.1),
                 lambda: robust_score(standard_net, X, y, ["pgd", "nfgsm"], eps=0.1),
                 lambda: robustness_report(standard_net, X, y, attacks=["nfgsm"], eps=[0.1])):
        with pytest.raises(ValueError, match="'nfgsm' is a training attack whose perturbations leave the eps-ball"):
            call()
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="training attack"):
        teacher(attack="fgsm", max_epochs=1, callbacks=[RobustAccuracy(X, y, attack="nfgsm")]).fit(
            X_train[:64], y_train[:64])
    pool = TeacherPool(teacher(max_epochs=1), attacks=["fgsm_rs", "nfgsm"], random_state=0).fit(
        X_train[:200], y_train[:200])
    assert [t.attack for t in pool.teachers_] == ["fgsm_rs", "nfgsm"]


def test_a_fast_teacher_is_robust_where_a_standard_net_is_not(digits):
    X_train, X_test, y_train, y_test = digits
    fast = teacher(attack="fgsm_rs", eps=0.2, max_epochs=8).fit(X_train, y_train)
    standard = teacher(attack=None, max_epochs=8).fit(X_train, y_train)
    kw = dict(eps=0.2, random_state=0)
    fast_score, standard_score = robust_score(fast, X_test, y_test, **kw), robust_score(standard, X_test, y_test, **kw)
    assert fast_score > standard_score + 0.15, (fast_score, standard_score)


def test_fgsm_without_a_random_start_at_a_large_eps_warns(digits):
    X_train, _, y_train, _ = digits
    with pytest.warns(RobustKDWarning, match="known to overfit catastrophically"):
        teacher(attack="fgsm", eps=0.3, max_epochs=1).fit(X_train[:64], y_train[:64])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustKDWarning)
        teacher(attack="fgsm", eps=0.1, max_epochs=1).fit(X_train[:64], y_train[:64])
        teacher(attack="fgsm_rs", eps=0.3, max_epochs=1).fit(X_train[:64], y_train[:64])


class Weights(Callback):
    """Keeps a copy of the weights after every epoch."""

    def on_train_begin(self, net, **kwargs):
        self.states_ = []

    def on_epoch_end(self, net, **kwargs):
        self.states_.append({k: v.clone() for k, v in net.module_.state_dict().items()})


def scripted_scores(monkeypatch, robust, fgsm):
    """robust_score as the callback sees it: the given accuracies, epoch after epoch."""
    import robustkd.callbacks as callbacks

    robust, fgsm = iter(robust), iter(fgsm)
    monkeypatch.setattr(callbacks, "robust_score",
                        lambda model, X, y, attack, **kw: next(fgsm if attack == "fgsm" else robust))


def test_robust_early_stopping_keeps_the_best_epoch_and_stops_at_catastrophic_overfitting(digits, monkeypatch):
    X_train, _, y_train, _ = digits
    scripted_scores(monkeypatch, robust=[0.40, 0.55, 0.50, 0.05, 0.0], fgsm=[0.5, 0.6, 0.6, 0.9, 0.95])
    weights = Weights()
    net = teacher(attack="fgsm", max_epochs=5, train_split=ValidSplit(5),
                  callbacks=[weights, RobustEarlyStopping()])
    with pytest.warns(RobustKDWarning, match=r"catastrophic overfitting at epoch 4: pgd accuracy .* fell from "
                                             r"0.550 \(epoch 2\) to 0.050 while FGSM accuracy rose to 0.900"):
        net.fit(X_train[:200], y_train[:200])
    assert len(net.history) == 4, "the fit stops at the collapse"
    assert net.history[-1, "stopped_early"] == "collapse" and "stopped_early" not in net.history[-2]
    assert net.history[:, "valid_robust_best"] == [True, True, False, False]
    assert net.history[:, "valid_robust_acc"] == [0.40, 0.55, 0.50, 0.05]
    for key, value in net.module_.state_dict().items():        # the best epoch's weights are back
        assert torch.equal(value, weights.states_[1][key]), key


def test_robust_early_stopping_patience_and_its_errors(digits, monkeypatch):
    X_train, _, y_train, _ = digits
    scripted_scores(monkeypatch, robust=[0.5, 0.4, 0.45, 0.3], fgsm=[0.5] * 4)
    net = teacher(attack="pgd", max_epochs=6, train_split=ValidSplit(5),
                  callbacks=[RobustEarlyStopping(patience=2, restore_best=False)])
    assert len(net.fit(X_train[:200], y_train[:200]).history) == 3
    assert net.history[-1, "stopped_early"] == "patience"
    with pytest.raises(ValueError, match="needs a validation split: set train_split"):
        teacher(attack="pgd", max_epochs=1, callbacks=[RobustEarlyStopping()]).fit(X_train[:64], y_train[:64])
    with pytest.raises(ValueError, match=r"collapse must be a finite number in \(0, 1\]; got collapse=2"):
        teacher(attack="pgd", max_epochs=1, train_split=ValidSplit(5),
                callbacks=[RobustEarlyStopping(collapse=2)]).fit(X_train[:64], y_train[:64])


def test_robust_early_stopping_on_real_scores_records_both_accuracies(digits):
    X_train, _, y_train, _ = digits
    net = teacher(attack="fgsm_rs", max_epochs=2, train_split=ValidSplit(5),
                  callbacks=[RobustEarlyStopping(max_samples=60, attack_params={"nb_iter": 3})])
    net.fit(X_train[:300], y_train[:300])
    robust, fgsm = net.history[:, "valid_robust_acc"], net.history[:, "valid_fgsm_acc"]
    assert len(robust) == 2 and all(0 <= r <= f <= 1 for r, f in zip(robust, fgsm))


def test_one_cycle_learning_rate_rises_then_falls_and_resumes_where_it_stopped(digits):
    from robustkd.callbacks import OneCycleSchedule

    X_train, _, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    seen = []

    class Rates(Callback):
        def on_batch_end(self, net, training=False, **kwargs):
            if training:
                seen.append(net.optimizer_.param_groups[0]["lr"])

    full = teacher(attack="fgsm_rs", lr=0.004, max_epochs=4, batch_size=64,
                   callbacks=[OneCycleSchedule(pct_start=0.25, start=0.1, end=0.0), Rates()]).fit(X, y)
    # 4 batches per epoch: progress t = i / 16, the peak at t = 0.25 (batch 4), linear on both sides
    expected = [0.004 * (0.1 + 0.9 * (i / 16) / 0.25) if i <= 4 else 0.004 * (1 - (i / 16 - 0.25) / 0.75)
                for i in range(16)]
    assert seen == pytest.approx(expected)
    assert list(full.history[:, "lr"]) == pytest.approx(expected[3::4])
    # the remaining epochs trained later (partial_fit, as fit_resumable does) continue the same schedule and
    # end with the weights of the uninterrupted fit (each epoch is seeded from (random_state, epoch))
    half = teacher(attack="fgsm_rs", lr=0.004, max_epochs=4, batch_size=64,
                   callbacks=[OneCycleSchedule(pct_start=0.25, start=0.1, end=0.0), Rates()])
    seen.clear()
    half.partial_fit(X, y, epochs=2)
    half.partial_fit(X, y, epochs=2)
    assert seen == pytest.approx(expected)
    assert all(torch.equal(p, q) for p, q in zip(half.module_.parameters(), full.module_.parameters()))
    # skorch's warm_start trains max_epochs more: past the cycle, which warns
    with pytest.warns(RobustKDWarning, match=r"OneCycleSchedule: epoch 5 is past the cycle of max_epochs=4"):
        full.set_params(warm_start=True, max_epochs=4).fit(X, y)
    for bad, message in [(dict(pct_start=1.0), r"pct_start must be a finite number in \(0, 1\); got pct_start=1.0"),
                         (dict(end=2.0), r"end must be a finite number in \[0, 1\]; got end=2.0"),
                         (dict(max_lr=0.0), r"max_lr must be None or a finite number > 0; got max_lr=0.0")]:
        with pytest.raises(ValueError, match=message):
            teacher(attack=None, max_epochs=1, callbacks=[OneCycleSchedule(**bad)]).fit(X, y)


def test_epsilon_warmup_ramps_the_training_budget_and_only_the_training_budget(digits):
    from robustkd.callbacks import EpsilonWarmup

    X_train, _, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    seen = []

    class Budgets(Callback):    # the budget of the attack each training batch is crafted with
        def on_batch_begin(self, net, training=False, batch=None, **kwargs):
            if training:
                attack = net.build_attack()
                seen.append((0.0 if attack is None else attack.eps, net.training_eps()))

    full = teacher(attack="pgd", eps=0.2, max_epochs=4, batch_size=64, attack__nb_iter=2,
                   callbacks=[EpsilonWarmup(epochs=2, start=0.0), Budgets()]).fit(X, y)
    # 4 batches per epoch: share t = i / 8 of eps over the first two epochs, then the whole budget
    expected = [0.2 * min(1.0, i / 8) for i in range(16)]
    assert [a for a, _ in seen] == pytest.approx(expected)
    assert all(whole == 0.2 for _, whole in seen), "scores and model selection keep the whole budget"
    assert list(full.history[:, "eps_scale"]) == pytest.approx([3 / 8, 7 / 8, 1.0, 1.0])
    assert full.eps_scale() == 1.0 and "eps_scale_" not in vars(full), "after the fit: the whole budget"
    # at share 0 the batch trains on the clean inputs
    first = teacher(attack="pgd", eps=0.2, max_epochs=1, callbacks=[EpsilonWarmup(epochs=2)])
    first.initialize()
    first.eps_scale_ = 0.0
    x = torch.as_tensor(X[:8])
    assert torch.equal(first.adversarial_examples(x, torch.as_tensor(y[:8])), x)
    # a resumed fit continues the ramp where it stopped, and ends with the uninterrupted fit's weights
    seen.clear()
    half = teacher(attack="pgd", eps=0.2, max_epochs=4, batch_size=64, attack__nb_iter=2,
                   callbacks=[EpsilonWarmup(epochs=2, start=0.0), Budgets()])
    half.partial_fit(X, y, epochs=1)
    half.partial_fit(X, y, epochs=3)
    assert [a for a, _ in seen] == pytest.approx(expected)
    assert all(torch.equal(p, q) for p, q in zip(half.module_.parameters(), full.module_.parameters()))
    # a distiller's adversarial student ramps its student_eps the same way
    from robustkd import MultiTeacherDistiller
    seen.clear()
    MultiTeacherDistiller([full], student_inputs="adversarial", student_eps=0.1, student_attack__nb_iter=1,
                          max_epochs=1, batch_size=64, train_split=None, verbose=0, random_state=0,
                          callbacks=[EpsilonWarmup(epochs=1, start=0.5), Budgets()]).fit(X, y)
    assert [a for a, _ in seen] == pytest.approx([0.1 * (0.5 + 0.5 * i / 4) for i in range(4)])
    for bad, message in [(dict(epochs=0), r"epochs must be a finite number > 0; got epochs=0"),
                         (dict(start=1.5), r"start must be a finite number in \[0, 1\]; got start=1.5")]:
        with pytest.raises(ValueError, match=message):
            teacher(attack="pgd", max_epochs=1, callbacks=[EpsilonWarmup(**bad)]).fit(X, y)


def test_epsilon_warmup_needs_a_net_with_a_training_attack(digits):
    from skorch import NeuralNetClassifier

    from robustkd.callbacks import EpsilonWarmup

    X_train, _, y_train, _ = digits
    net = NeuralNetClassifier(SmallCNN, module__input_shape=(1, 8, 8), criterion=torch.nn.CrossEntropyLoss,
                              max_epochs=1, train_split=None, verbose=0, callbacks=[EpsilonWarmup()])
    with pytest.raises(TypeError, match="EpsilonWarmup needs a net with a training attack .* got NeuralNetClassifier"):
        net.fit(X_train[:64], y_train[:64])
