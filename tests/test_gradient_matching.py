"""Input-gradient distillation terms: per-sample input gradients and the cosine matching loss."""
import numpy as np
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


# ------------------------------------------------------------- in MultiTeacherDistiller
def _distiller(teachers, **kwargs):
    from robustkd import MultiTeacherDistiller
    params = dict(max_epochs=2, batch_size=64, train_split=None, verbose=0, random_state=0)
    params.update(kwargs)
    return MultiTeacherDistiller(teachers, **params)


def test_a_zero_weight_changes_nothing(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    plain = _distiller(teacher_pool).fit(X_train[:300], y_train[:300])
    zero = _distiller(teacher_pool, gradient_matching=0.0).fit(X_train[:300], y_train[:300])
    some = _distiller(teacher_pool, gradient_matching=1.0).fit(X_train[:300], y_train[:300])
    assert all(torch.equal(p, q) for p, q in zip(plain.module_.parameters(), zero.module_.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(plain.module_.parameters(), some.module_.parameters()))
    assert "grad_cos" not in plain.history[-1]["batches"][0] and "grad_cos" in some.history[-1]["batches"][0]


class GradientCacheRecorder:
    """Keeps the training dataset that get_split_datasets built (with its cached teacher gradients)."""

    def get_split_datasets(self, X, y=None, **fit_params):
        train, valid = super().get_split_datasets(X, y, **fit_params)
        self.train_dataset_ = train
        return train, valid


@pytest.mark.parametrize("scheme, stored", [("confidence", "mixture"), ("accuracy", "per teacher")])
def test_cached_teacher_gradients_equal_fresh_ones(teacher_pool, digits, scheme, stored):
    from robustkd import MultiTeacherDistiller
    Recorder = type("Recorder", (GradientCacheRecorder, MultiTeacherDistiller), {})
    X_train, _, y_train, _ = digits
    X, y = X_train[:200], y_train[:200]
    d = Recorder(teacher_pool, gradient_matching=1.0, weighter__scheme=scheme, max_epochs=1, batch_size=64,
                 train_split=None, verbose=0, random_state=0).fit(X, y)
    cached = d.train_dataset_.teacher_grads
    n_teachers = len(teacher_pool.teachers_)
    # a per-sample scheme stores one mixed gradient per input, a batch-level one every teacher's
    assert cached.shape == ((200, 1, 8, 8) if stored == "mixture" else (200, n_teachers, 1, 8, 8))
    x, yt = torch.as_tensor(X), torch.as_tensor(y).long()
    fresh = d.frozen_teachers_.input_gradients(x, yt)
    assert torch.allclose(fresh.flatten(2).norm(dim=2), torch.ones(200, n_teachers), atol=1e-5)
    if stored == "mixture":
        assert torch.allclose(cached, d.gradient_target(x, yt), atol=1e-6)
    else:
        assert torch.allclose(cached, fresh, atol=1e-6)
    # a batch carrying the cache gives the same target as the inputs alone (the teachers recomputed)
    batch = {"X": x[:64], "teacher_logits": d.teacher_logits(x[:64]), "teacher_grads": cached[:64]}
    assert torch.allclose(d.gradient_target(batch, yt[:64]), d.gradient_target(x[:64], yt[:64]), atol=1e-6)


def test_cached_and_recomputed_teacher_gradients_train_the_same_student(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    a = _distiller(teacher_pool, gradient_matching=2.0).fit(X_train[:300], y_train[:300])
    b = _distiller(teacher_pool, gradient_matching=2.0, cache_teacher_outputs=False).fit(X_train[:300], y_train[:300])
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.allclose(pa, pb, atol=1e-4)


def test_gradient_matching_aligns_the_students_input_gradients_with_the_teachers(teacher_pool, digits):
    X_train, X_test, y_train, y_test = digits
    plain = _distiller(teacher_pool, max_epochs=10).fit(X_train, y_train)
    matched = _distiller(teacher_pool, max_epochs=10, gradient_matching=5.0).fit(X_train, y_train)
    x, y = torch.as_tensor(X_test), torch.as_tensor(y_test).long()
    target = matched.gradient_target(x, y).flatten(1)

    def cosine(net):
        return F.cosine_similarity(input_gradients(net.module_.eval(), x, y).flatten(1), target, dim=1).mean()
    assert cosine(matched) > cosine(plain) + 0.1
    assert np.mean(matched.predict(X_test) == y_test) > 0.8


@pytest.mark.parametrize("value", [-1, float("inf"), True, "5"])
def test_gradient_matching_weight_is_checked(teacher_pool, digits, value):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=f"gradient_matching must be a finite number >= 0; got "
                                         f"gradient_matching={value!r}"):
        _distiller(teacher_pool, gradient_matching=value).fit(X_train[:64], y_train[:64])
