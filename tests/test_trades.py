"""TRADES: the ``pgd_kl`` attack, the pure ``trades_loss``, and ``AdversarialTeacher(objective="trades")``."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from robustkd import AdversarialTeacher, SmallCNN, TeacherPool, robust_score
from robustkd.attacks import get_attack, perturb
from robustkd.losses import OBJECTIVES, adversarial_loss, trades_loss


def teacher(**kwargs):
    params = dict(module__input_shape=(1, 8, 8), eps=0.2, max_epochs=2, batch_size=64, train_split=None, verbose=0,
                  random_state=0)
    params.update(kwargs)
    return AdversarialTeacher(SmallCNN, **params)


def kl_from_clean(module, x, x_adv):
    with torch.no_grad():
        return F.kl_div(F.log_softmax(module(x_adv), 1), F.softmax(module(x), 1), reduction="none").sum(1)


def test_pgd_kl_stays_in_the_ball_ignores_labels_and_moves_the_prediction(standard_net, digits):
    _, X_test, _, y_test = digits
    x, y = torch.from_numpy(X_test[:64]), torch.from_numpy(y_test[:64])
    module = standard_net.module_
    attack = get_attack("pgd_kl", module, eps=0.1)
    assert (attack.nb_iter, attack.eps_iter, attack.init_std) == (10, 0.025, 0.001)
    seeds = np.arange(64) + 3
    adv = perturb(attack, x, y, sample_seeds=seeds)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # the target is the clean prediction: labels do not matter; starts are per sample
    assert torch.equal(perturb(attack, x, torch.zeros_like(y), sample_seeds=seeds), adv)
    assert torch.equal(perturb(attack, x[10:14], y[10:14], sample_seeds=seeds[10:14]), adv[10:14])
    # it maximises the KL divergence: far more than its own random start or one step does
    start_only = perturb(get_attack("pgd_kl", module, eps=0.1, nb_iter=1, eps_iter=0.0), x, y, sample_seeds=seeds)
    one_step = perturb(get_attack("pgd_kl", module, eps=0.1, nb_iter=1), x, y, sample_seeds=seeds)
    kl = [kl_from_clean(module, x, a).mean().item() for a in (start_only, one_step, adv)]
    assert kl[0] < 1e-3 < kl[1] < kl[2], kl
    assert robust_score(standard_net, X_test[:200], y_test[:200], "pgd_kl", eps=0.1, random_state=0) < \
        robust_score(standard_net, X_test[:200], y_test[:200], eps=0) - 0.2


def test_pgd_kl_moves_away_from_given_soft_labels(standard_net, digits):
    _, X_test, _, y_test = digits
    x, y = torch.from_numpy(X_test[:64]), torch.from_numpy(y_test[:64])
    module = standard_net.module_
    attack = get_attack("pgd_kl", module, eps=0.1)
    seeds = np.arange(64)
    soft = torch.full((64, 10), 0.02).scatter(1, y[:, None], 0.82)      # soft labels near the true class
    away = perturb(attack, x, soft, sample_seeds=seeds)
    assert (away - x).abs().max() <= 0.1 + 1e-6
    assert not torch.equal(away, perturb(attack, x, y, sample_seeds=seeds))     # another target, another attack

    def kl_from(target, x_adv):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(module(x_adv), 1), target, reduction="none").sum(1).mean().item()
    start = perturb(get_attack("pgd_kl", module, eps=0.1, nb_iter=1, eps_iter=0.0), x, soft, sample_seeds=seeds)
    assert kl_from(soft, away) > kl_from(soft, start) + 0.5


def test_trades_loss_is_the_published_objective():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(6, 4, generator=gen, requires_grad=True)
    adv = torch.randn(6, 4, generator=gen, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    p = F.softmax(clean, 1)
    expected = F.cross_entropy(clean, y) + 6.0 * (p * (p.log() - F.log_softmax(adv, 1))).sum(1).mean()
    assert torch.allclose(trades_loss(clean, adv, y), expected)
    assert torch.allclose(trades_loss(clean, adv, y, beta=0.0), F.cross_entropy(clean, y))
    assert torch.allclose(trades_loss(clean, clean, y, beta=3.0), F.cross_entropy(clean, y))
    # the gradient reaches both the clean and the adversarial logits, as in the reference code
    trades_loss(clean, adv, y).backward()
    assert clean.grad.abs().sum() > 0 and adv.grad.abs().sum() > 0
    smoothed = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    assert torch.allclose(trades_loss(clean, clean, y, criterion=smoothed), smoothed(clean, y))
    assert torch.equal(adversarial_loss(None, adv, y), F.cross_entropy(adv, y))
    assert dict(OBJECTIVES) == {"madry": adversarial_loss, "trades": trades_loss}
    with pytest.raises(TypeError):
        OBJECTIVES["mart"] = adversarial_loss   # read-only: the training step knows these two
    with pytest.raises(ValueError, match=r"beta must be >= 0; got beta=-1"):
        trades_loss(clean, adv, y, beta=-1)
    with pytest.raises(ValueError, match="same shape"):
        trades_loss(clean, adv[:3], y)


def test_a_trades_teacher_beats_a_standard_model_by_30_points_under_pgd_at_eps_0_2(digits):
    X_train, X_test, y_train, y_test = digits
    trades = teacher(objective="trades", attack="pgd_kl", attack__nb_iter=5, max_epochs=20).fit(X_train, y_train)
    standard = teacher(attack=None, max_epochs=20).fit(X_train, y_train)
    kw = dict(eps=0.2, random_state=0)
    trades_pgd, standard_pgd = (robust_score(m, X_test, y_test, "pgd", **kw) for m in (trades, standard))
    assert trades_pgd >= standard_pgd + 0.30, (trades_pgd, standard_pgd)
    assert robust_score(trades, X_test, y_test, eps=0) > 0.9
    assert trades.training_attack() == "pgd_kl"


def test_the_trades_step_uses_the_kl_attack_and_both_forward_passes(digits, monkeypatch):
    X_train, _, y_train, _ = digits
    seen = []
    import robustkd.training._teacher as teacher_module

    original = trades_loss

    def spy(clean, adv, y, **kwargs):
        seen.append((clean.detach().clone(), adv.detach().clone(), kwargs["beta"]))
        return original(clean, adv, y, **kwargs)

    monkeypatch.setattr(teacher_module, "trades_loss", spy)
    net = teacher(objective="trades", beta=2.5, max_epochs=1).fit(X_train[:64], y_train[:64])
    assert len(seen) == 1 and seen[0][2] == 2.5
    clean, adv, _ = seen[0]
    assert clean.shape == adv.shape == (64, 10) and not torch.equal(clean, adv)
    assert np.isfinite(net.history[-1, "train_loss"])


def test_the_default_attack_is_pgd_whatever_the_objective_and_bad_settings_are_named(digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:64], y_train[:64]
    assert teacher().training_attack() == "pgd"
    assert teacher(objective="trades").training_attack() == "pgd"
    assert teacher(objective="trades", attack="pgd_kl").training_attack() == "pgd_kl"
    assert teacher(objective="trades", attack="fgsm_rs").training_attack() == "fgsm_rs"
    for kwargs, message in [(dict(objective="mart"), r"objective must be one of \['madry', 'trades'\]; got "
                                                     r"objective='mart'"),
                            (dict(objective="trades", beta=-1.0), r"beta must be a finite number >= 0; got beta=-1.0"),
                            (dict(objective="trades", adv_ratio=0.5), r"adv_ratio must be 1 with objective='trades'"),
                            (dict(objective="trades", attack=None), r"objective='trades' needs a training attack")]:
        with pytest.raises(ValueError, match=message):
            teacher(**kwargs).fit(X, y)
    pool = TeacherPool(teacher(objective="trades", max_epochs=1), attacks=["pgd_kl", "fgsm_rs"], random_state=0)
    assert [t.objective for t in pool.fit(X, y).teachers_] == ["trades", "trades"]
