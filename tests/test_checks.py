"""Each sanity check fires on a model built to trigger it and stays silent on a normal model."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustkd import robustness_report
from robustkd.evaluation.checks import check_monotone
from robustkd.exceptions import GradientMaskingWarning, RobustKDWarning


class Wrapped(nn.Module):
    """The standard net's module with something bolted on."""

    def __init__(self, inner, kind):
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x):
        if self.kind == "round":
            x = torch.round(x * 4) / 4            # non-differentiable: zero input gradients
        if self.kind == "noisy":
            x = F.dropout(x, 0.3, training=True)  # random even in eval mode
        out = self.inner(x)
        if self.kind == "huge_logits":
            return out * 1e4                      # saturates the cross-entropy; DLR does not care
        if self.kind == "softmax":
            return F.softmax(out, 1)
        if self.kind == "log_softmax":
            return F.log_softmax(out, 1)
        return out


def report_warnings(model, X, y, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        robustness_report(model, X, y, attacks=["pgd"], eps=[0.1, 0.2], random_state=0, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, RobustKDWarning)]


@pytest.fixture(scope="module")
def data(digits):
    _, X_test, _, y_test = digits
    return X_test[:150], y_test[:150]


def test_a_normal_model_passes_every_check(standard_net, data):
    assert report_warnings(standard_net, *data, checks="full") == []


@pytest.mark.parametrize("kind, message", [
    ("softmax", "outputs are probabilities"),
    ("log_softmax", "outputs are log-probabilities"),
    ("round", "input gradients are exactly zero"),
    ("noisy", "the model is randomised"),
])
def test_fast_checks_fire_on_models_built_to_trigger_them(standard_net, data, kind, message):
    messages = report_warnings(Wrapped(standard_net.module_, kind), *data)
    assert any(message in m for m in messages), messages


def test_full_checks_catch_gradient_masking(standard_net, data):
    messages = report_warnings(Wrapped(standard_net.module_, "round"), *data, checks="full")
    assert any("the whole input range" in m for m in messages), messages
    assert any("SPSA attack beats PGD" in m for m in messages), messages
    assert any("Square Attack beats the gradient attacks" in m for m in messages), messages


def test_a_saturated_cross_entropy_is_flagged_by_apgd_dlr(standard_net, data):
    from robustkd.evaluation.checks import check_dlr

    module = Wrapped(standard_net.module_, "huge_logits")
    X, y = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    with pytest.warns(GradientMaskingWarning, match="APGD on the DLR loss reaches"):
        assert check_dlr(module, X, y, 0.2, n_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not check_dlr(standard_net.module_, X, y, 0.2, n_iter=20)


def test_a_weak_attack_is_flagged(standard_net, data):
    weak = {"pgd": {"nb_iter": 1, "eps_iter": 0.002, "rand_init": False}}
    messages = report_warnings(standard_net, *data, checks="full", attack_params=weak)
    assert any("the reported attack is too weak" in m for m in messages), messages


def test_accuracy_rising_with_eps_is_flagged():
    rows = [{"attack": "clean", "eps": 0.0, "accuracy": 0.9}, {"attack": "pgd", "eps": 0.1, "accuracy": 0.3},
            {"attack": "pgd", "eps": 0.2, "accuracy": 0.5}]
    with pytest.warns(GradientMaskingWarning, match="accuracy under pgd rises with eps"):
        assert check_monotone(rows)
    rows[2]["accuracy"] = 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not check_monotone(rows)


def test_checks_argument_is_validated(standard_net, data):
    with pytest.raises(ValueError, match='checks must be "fast", "full" or None; got checks=\'all\''):
        robustness_report(standard_net, *data, checks="all")


def test_check_budgets_are_parameters(standard_net, data):
    weak = {"pgd": {"nb_iter": 1, "eps_iter": 0.002, "rand_init": False}}
    budgets = {"strong_steps": 7, "restarts": 1, "large_eps_steps": 5, "spsa_params": {"nb_iter": 2}, "max_samples": 60}
    messages = report_warnings(standard_net, *data, checks="full", attack_params=weak, check_params=budgets)
    assert any("PGD with 7 steps and 1 restarts lowers accuracy" in m for m in messages), messages
    with pytest.raises(TypeError, match="strong_stepz"):
        report_warnings(standard_net, *data, checks="full", check_params={"strong_stepz": 3})
