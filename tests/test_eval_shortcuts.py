"""Evaluation shortcuts that must not change results: channels-last weights on the CPU, FAB-T once per eps grid."""
import numpy as np
import pytest
import torch
from torch import nn

from robustkd import robust_mask, robustness_report
from robustkd._layout import channels_last
from robustkd.attacks import FABTargeted, get_attack, share_memos


def test_channels_last_gives_the_same_logits_and_restores_every_weight(standard_net):
    module = standard_net.module_
    x = torch.rand(16, 1, 8, 8)
    before = [p.data_ptr() for p in module.parameters()]
    strides = [p.stride() for p in module.parameters()]
    with torch.no_grad():
        expected = module(x)
        with channels_last(module, x[:4]):
            convs = [p for p in module.parameters() if p.dim() == 4]
            # explicit channels-last strides, also for the first conv (one input channel)
            assert all(p.stride()[1] == 1 for p in convs)
            got = module(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert [p.data_ptr() for p in module.parameters()] == before          # the very same storage
    assert [p.stride() for p in module.parameters()] == strides


class _ViewsActivations(nn.Module):
    """A module that ``view``s its conv output: this fails on channels-last activations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(len(h), -1))


def test_a_module_that_cannot_run_channels_last_is_left_as_it_is(digits):
    _, X_test, _, y_test = digits
    torch.manual_seed(0)
    module = _ViewsActivations().eval()
    with channels_last(module, torch.rand(4, 1, 8, 8)):
        assert module.conv.weight.is_contiguous()                    # the conversion was undone
        module(torch.rand(4, 1, 8, 8))
    # and evaluation still works on it
    X = X_test[:40].reshape(-1, 1, 8, 8)
    score = robust_mask(module, X, y_test[:40], "pgd", eps=0.1, random_state=0).mean()
    assert 0.0 <= score <= 1.0


def test_fab_t_over_an_eps_grid_runs_once_per_sample_with_the_same_result(standard_net, digits, monkeypatch):
    _, X_test, _, y_test = digits
    X, y = X_test[:60], y_test[:60]
    params = {"fab_t": {"n_iter": 10, "n_target_classes": 2}}
    eps = [0.05, 0.1, 0.2]
    alone = {e: robust_mask(standard_net, X, y, "fab_t", eps=e, **params["fab_t"]) for e in eps}
    runs = []
    original = FABTargeted._run

    def counting(self, u0, y_, y_target):
        runs.append(len(u0))
        return original(self, u0, y_, y_target)

    monkeypatch.setattr(FABTargeted, "_run", counting)
    report = robustness_report(standard_net, X, y, attacks=["fab_t"], eps=eps, attack_params=params, checks=None)
    for e in eps:
        row = next(r for r in report if r["attack"] == "fab_t" and r["eps"] == e)
        assert row["accuracy"] == pytest.approx(alone[e].mean())
    # one run per target class on at most the clean-correct samples, not one per eps
    clean = robust_mask(standard_net, X, y, eps=0)
    assert sum(runs) <= 2 * clean.sum()
    assert sum(runs) < sum(alone[e].sum() + (clean & ~alone[e]).sum() for e in eps)


def test_share_memos_links_only_attacks_that_differ_in_eps(standard_net):
    module = standard_net.module_
    a, b = get_attack("fab_t", module, eps=0.1), get_attack("fab_t", module, eps=0.2)
    c = get_attack("fab_t", module, eps=0.1, n_iter=5)
    cascades = [get_attack("autoattack", module, eps=e) for e in (0.1, 0.2)]
    share_memos([a, b, c] + cascades)
    assert a.memo is b.memo and a.memo is not c.memo
    fab_members = [dict(cascade.attacks)["fab_t"] for cascade in cascades]
    assert fab_members[0].memo is fab_members[1].memo
    assert repr(a) == repr(get_attack("fab_t", module, eps=0.1))     # the memo is not a parameter
    np.testing.assert_equal(get_attack("fab_t", module, eps=0.1).memo, None)


def test_training_runs_channels_last_and_hands_back_nchw_weights_of_the_same_training(digits, monkeypatch):
    import robustkd._base as base
    from robustkd import AdversarialTeacher, SmallCNN

    X_train, _, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    layouts = []


    def make():
        return AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm_rs", eps=0.1, max_epochs=2,
                                  batch_size=32, train_split=None, verbose=0, random_state=0)

    import robustkd.attacks._fast as fast
    original = fast.NoisyFGSM.perturb
    monkeypatch.setattr(fast.NoisyFGSM, "perturb", lambda self, x, y, **kw: (
        layouts.append(all(p.stride()[1] == 1 for p in self.predict.parameters() if p.dim() == 4)),
        original(self, x, y, **kw))[1])
    fast_fit = make().fit(X, y)
    assert layouts and all(layouts), "the training attack ran on channels-last weights"
    assert all(p.is_contiguous() for p in fast_fit.module_.parameters()), "NCHW weights once fitted"
    layouts.clear()
    monkeypatch.setattr(base.SeededNetMixin, "_layout_probe", lambda self, X: None)   # the NCHW reference
    reference = make().fit(X, y)
    assert layouts and not any(layouts)
    for p, q in zip(fast_fit.module_.parameters(), reference.module_.parameters()):
        assert torch.allclose(p, q, atol=1e-4), "the same training up to float rounding"
    # a warm-started fit goes on from the trained weights, channels-last again
    before = [p.detach().clone() for p in fast_fit.module_.parameters()]
    fast_fit.set_params(warm_start=True, max_epochs=1).fit(X, y)
    assert any(not torch.equal(p, b) for p, b in zip(fast_fit.module_.parameters(), before))
    assert all(p.is_contiguous() for p in fast_fit.module_.parameters())


def test_a_module_that_cannot_run_channels_last_trains_as_it_is(digits):
    from robustkd import AdversarialTeacher

    X_train, _, y_train, _ = digits
    # a fresh array: numpy gives the size-1 channel axis of a fancy-indexed array an arbitrary stride, which
    # torch reads as channels-last, and this module cannot take channels-last inputs at all
    X = np.array(X_train[:128].tolist(), dtype=np.float32)
    net = AdversarialTeacher(_ViewsActivations, attack="fgsm_rs", eps=0.1, max_epochs=1, train_split=None, verbose=0,
                             random_state=0).fit(X, y_train[:128])
    assert net.module_.conv.weight.is_contiguous() and np.isfinite(net.history[-1, "train_loss"])
