"""Input-gradient distillation terms: per-sample input gradients and the cosine matching loss."""
import pytest
import torch
from torch.nn import functional as F

from robustkd.losses import gradient_matching_loss, input_gradients


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(3 * 4 * 4, 5)).eval()


def test_input_gradients_are_per_sample_unit_vectors_of_the_cross_entropy():
    model = small_model()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(6, 1, 4, 4, generator=gen), torch.tensor([0, 1, 2, 3, 4, 0])
    raw = input_gradients(model, x, y, normalize=False)
    for i in range(6):   # sample i alone gives its own gradient: the batch does not leak in
        xi = x[i:i + 1].clone().requires_grad_(True)
        expected, = torch.autograd.grad(F.cross_entropy(model(xi), y[i:i + 1]), xi)
        assert torch.allclose(raw[i], expected[0], atol=1e-6)
    unit = input_gradients(model, x, y)
    assert torch.allclose(unit.flatten(1).norm(dim=1), torch.ones(6), atol=1e-6)
    assert torch.allclose(unit, raw / raw.flatten(1).norm(dim=1).view(-1, 1, 1, 1), atol=1e-6)
    assert not x.requires_grad, "the caller's input is not modified"
    # a zero gradient stays zero instead of becoming NaN
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    torch.nn.init.zeros_(flat[1].weight)
    assert torch.equal(input_gradients(flat, x, y), torch.zeros_like(x))


def test_the_student_trains_through_its_input_gradient_double_backpropagation():
    model = small_model()
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    target = torch.randn(4, 1, 1, 4, 4)
    loss = gradient_matching_loss(input_gradients(model, x, y, create_graph=True), target, torch.ones(4, 1))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.dim() > 1)
    with pytest.raises(RuntimeError):   # without create_graph there is no path back to the weights
        gradient_matching_loss(input_gradients(model, x, y), target, torch.ones(4, 1)).backward()


def test_gradient_matching_loss_is_one_minus_the_cosine_to_the_weighted_mix():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    teachers = torch.stack([e1, e2]).view(1, 2, 2)
    cases = [(e1, [1.0, 0.0], 0.0), (-e1, [1.0, 0.0], 2.0), (e2, [1.0, 0.0], 1.0), (e1 + e2, [0.5, 0.5], 0.0),
             (e1, [0.5, 0.5], 1 - 2 ** -0.5)]
    for student, w, expected in cases:
        value = gradient_matching_loss(student.view(1, 2), teachers, torch.tensor([w]))
        assert float(value) == pytest.approx(expected, abs=1e-6), (student, w)
    # scale-free in the student's gradient, averaged over samples
    s = torch.tensor([[3.0, 0.0], [0.0, -2.0]])
    t = torch.stack([teachers[0], teachers[0]])
    assert float(gradient_matching_loss(s, t, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"expected student gradients \(n, \*D\) and teacher gradients"):
        gradient_matching_loss(torch.zeros(2, 3), torch.zeros(2, 2, 4), torch.ones(2, 2) / 2)
    with pytest.raises(ValueError, match=r"weights must have shape \(n, K\)=\(2, 2\); got \(2, 3\)"):
        gradient_matching_loss(torch.zeros(2, 3), torch.zeros(2, 2, 3), torch.ones(2, 3) / 3)
