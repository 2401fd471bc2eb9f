import importlib

import pytest
import torch
from torch import nn

from robustkd.attacks import attack_mode, available_attacks, get_attack, perturb

FAST = {"spsa": {"nb_iter": 3, "nb_sample": 8, "max_batch_size": 8}, "cw": {"max_iterations": 20,
                                                                           "binary_search_steps": 2},
        **{name: {"n_iter": 5} for name in ("apgd_ce", "apgd_dlr", "apgd_ce_l2", "apgd_dlr_l2")},
        **{name: {"n_iter": 5, "n_target_classes": 2} for name in ("apgd_t", "apgd_t_l2", "apgd", "apgd_l2")},
        "square": {"n_queries": 20}, "fab_t": {"n_iter": 5, "n_target_classes": 2},
        "autoattack": {"n_iter": 5, "n_target_classes": 2, "n_queries": 20}}


def tiny_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_registry_has_the_required_attacks():
    names = set(available_attacks())
    assert {"fgsm", "pgd", "pgd_l2", "bim", "mim", "cw", "spsa"} <= names
    for spec in available_attacks().values():
        assert spec["norm"] in ("linf", "l2") and spec["eps"] > 0 and spec["description"]


def test_zero_gradients_shim_is_installed_and_works():
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    x = torch.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    gradcheck.zero_gradients([x])
    assert torch.equal(x.grad, torch.zeros(3))


def test_parameters_are_passed_explicitly_not_advertorch_defaults():
    model = tiny_model()
    pgd = get_attack("pgd", model, eps=0.1)
    assert (pgd.eps, pgd.nb_iter, pgd.rand_init) == (0.1, 10, True)
    assert pgd.eps_iter == pytest.approx(0.025)
    pgd = get_attack("pgd", model, eps=0.2, nb_iter=4, clip_min=-1.0, clip_max=2.0)
    assert pgd.eps_iter == pytest.approx(0.125) and (pgd.clip_min, pgd.clip_max) == (-1.0, 2.0)
    assert get_attack("pgd", model, eps=0.2, eps_iter=0.07).eps_iter == 0.07
    assert get_attack("mim", model, eps=0.1).eps_iter == pytest.approx(0.01)
    assert get_attack("fgsm", model).eps == available_attacks()["fgsm"]["eps"]


def test_an_attack_instance_is_returned_as_is():
    model = tiny_model()
    pgd = get_attack("pgd", model, eps=0.1)
    assert get_attack(pgd, model) is pgd
    with pytest.raises(ValueError, match="attack instance"):
        get_attack(pgd, model, eps=0.2)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(attack="pgdd"), ValueError, r"Unknown attack 'pgdd'; known attacks are \[.*'bim', .*'pgd'"),
    (dict(attack="pgd", eps=-0.1), ValueError, r"eps must be a finite number >= 0; got eps=-0.1"),
    (dict(attack="pgd", eps="big"), TypeError, r"eps must be a non-negative number; got eps='big'"),
    (dict(attack="pgd", steps=10), TypeError, r"unexpected parameter\(s\) \['steps'\]"),
    (dict(attack="pgd", nb_iter=0), ValueError, r"nb_iter must be an integer >= 1; got nb_iter=0"),
    (dict(attack="pgd", clip_min=1.0, clip_max=0.0), ValueError, r"clip_min must be < clip_max"),
    (dict(attack=3), TypeError, r"attack must be a name"),
])
def test_bad_arguments_name_the_parameter(kwargs, exc, match):
    attack = kwargs.pop("attack")
    with pytest.raises(exc, match=match):
        get_attack(attack, tiny_model(), **kwargs)


@pytest.mark.parametrize("name", sorted(available_attacks()))
def test_every_attack_respects_budget_range_inputs_and_model_state(name):
    model = tiny_model().train()
    model[0].weight.requires_grad_(True)
    x = torch.rand(6, 1, 8, 8)
    y = torch.randint(0, 10, (6,))
    x_before, y_before = x.clone(), y.clone()
    eps = 0.5 if available_attacks()[name]["norm"] == "l2" else 0.1
    x_adv = perturb(get_attack(name, model, eps=eps, **FAST.get(name, {})), x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    norm = delta.norm(dim=1) if available_attacks()[name]["norm"] == "l2" else delta.abs().max(dim=1).values
    # a training-only attack (N-FGSM) leaves the eps-ball by design: noise of 2 eps plus a step of eps
    bound = 3 * eps if available_attacks()[name]["training_only"] else eps
    assert (norm <= bound + 1e-5).all()
    assert all(m.training for m in model.modules()), "train mode must be restored"
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters()), "attack gradients leaked into parameters"


@pytest.mark.parametrize("name", sorted(available_attacks()))
def test_every_attack_repr_lists_its_parameters(name):
    spec = available_attacks()[name]
    text = repr(get_attack(name, tiny_model(), eps=0.123))
    assert "eps=0.123" in text and "object at 0x" not in text
    for param, value in spec["params"].items():
        assert f"{param}={value!r}" in text, (param, text)


def test_attacks_actually_move_the_input():
    model = tiny_model().eval()
    x = torch.rand(6, 1, 8, 8)
    y = model(x).argmax(1)
    for name in ("fgsm", "pgd", "bim", "mim"):
        x_adv = perturb(get_attack(name, model, eps=0.1), x, y)
        assert (x_adv - x).abs().max() > 0.05


def test_attack_mode_restores_state_after_an_error():
    model = tiny_model().train()
    with pytest.raises(RuntimeError):
        with attack_mode(model):
            assert not model.training and not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("boom")
    assert model.training and all(p.requires_grad for p in model.parameters())
