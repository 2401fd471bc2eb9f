"""Input-gradient distillation terms: per-sample input gradients and the cosine matching loss."""
import pickle

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


class NoGradientTerm:
    """A distiller whose gradient term must never be computed (nor the teachers' input gradients)."""

    def gradient_matching_term(self, *args, **kwargs):
        raise AssertionError("the gradient term was computed")

    def _teacher_gradients(self, *args, **kwargs):
        raise AssertionError("teacher gradients were computed")


def test_a_zero_weight_changes_nothing(teacher_pool, digits):
    from robustkd import MultiTeacherDistiller
    X_train, _, y_train, _ = digits
    X, y = X_train[:300], y_train[:300]
    Plain = type("Plain", (NoGradientTerm, GradientCacheRecorder, MultiTeacherDistiller), {})
    kw = dict(max_epochs=2, batch_size=64, train_split=None, verbose=0, random_state=0)
    zero = Plain(teacher_pool, gradient_matching=0.0, **kw).fit(X, y)        # the paper's loss, nothing more
    assert zero.train_dataset_.teacher_grads is None and "grad_cos" not in zero.history[-1]["batches"][0]
    other = Plain(teacher_pool, gradient_matching=0, gradient_weighter=None, **kw).fit(X, y)
    assert all(torch.equal(p, q) for p, q in zip(zero.module_.parameters(), other.module_.parameters()))
    some = _distiller(teacher_pool, gradient_matching=1.0).fit(X, y)
    assert not all(torch.equal(p, q) for p, q in zip(zero.module_.parameters(), some.module_.parameters()))
    assert "grad_cos" in some.history[-1]["batches"][0]


class GradientCacheRecorder:
    """Keeps the training dataset that get_split_datasets built (with its cached teacher gradients)."""

    def get_split_datasets(self, X, y=None, **fit_params):
        train, valid = super().get_split_datasets(X, y, **fit_params)
        self.train_dataset_ = train
        return train, valid


@pytest.mark.parametrize("scheme, stored", [("confidence", "mixture"), ("accuracy", "per teacher"),
                                            ("student_gap", "per teacher")])
def test_cached_teacher_gradients_equal_fresh_ones(teacher_pool, digits, scheme, stored):
    from robustkd import MultiTeacherDistiller
    Recorder = type("Recorder", (GradientCacheRecorder, MultiTeacherDistiller), {})
    X_train, _, y_train, _ = digits
    X, y = X_train[:200], y_train[:200]
    d = Recorder(teacher_pool, gradient_matching=1.0, weighter__scheme=scheme, gradient_weighter=None, max_epochs=1,
                 batch_size=64,
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
    a = _distiller(teacher_pool, gradient_matching=2.0, cache_teacher_features=False).fit(X_train[:300], y_train[:300])
    b = _distiller(teacher_pool, gradient_matching=2.0, cache_teacher_outputs=False).fit(X_train[:300], y_train[:300])
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.allclose(pa, pb, atol=1e-4)


def test_gradient_matching_aligns_the_students_input_gradients_with_the_teachers(teacher_pool, digits):
    X_train, X_test, y_train, y_test = digits
    plain = _distiller(teacher_pool, max_epochs=10, gradient_matching=0.0).fit(X_train, y_train)
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


def test_teacher_diagnostics_measure_agreement_and_gradient_alignment(teacher_pool, standard_net, digits):
    from robustkd.distillation import teacher_diagnostics
    _, X_test, _, y_test = digits
    teachers = list(teacher_pool.teachers_)
    d = teacher_diagnostics(teachers + [standard_net], X_test, y_test)
    k = len(teachers) + 1
    agree, cos = np.array(d["agreement"]), np.array(d["gradient_cosine"])
    assert agree.shape == cos.shape == (k, k)
    assert np.allclose(np.diag(agree), 1) and np.allclose(np.diag(cos), 1, atol=1e-5)
    assert np.allclose(agree, agree.T) and np.allclose(cos, cos.T, atol=1e-6)
    assert d["all_agree"] <= agree.min() + 1e-9
    preds = [t.predict(X_test) for t in teachers + [standard_net]]
    assert agree[0, 3] == pytest.approx(np.mean(preds[0] == preds[3]))
    assert d["accuracy"][3] == pytest.approx(np.mean(preds[3] == y_test))
    # the robust teachers' gradients agree with each other more than with the standard model's
    assert min(cos[i, j] for i in range(3) for j in range(3)) > max(cos[i, 3] for i in range(3))
    same = teacher_diagnostics([teachers[0], teachers[0]], X_test[:50], y_test[:50])
    assert same["all_agree"] == 1.0 and same["mean_gradient_cosine"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="models must be a non-empty list"):
        teacher_diagnostics([], X_test, y_test)


# ---------------------------------------------------------------- robust-precision weighting
def test_robust_precision_weights_favour_the_teacher_robust_around_each_input(teacher_pool, digits):
    from robustkd import AdversarialTeacher, SmallCNN
    X_train, _, y_train, _ = digits
    weak = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="pgd", eps=0.2, max_epochs=1,
                              train_split=None, verbose=0, random_state=0).fit(X_train[:200], y_train[:200])
    teachers = list(teacher_pool.teachers_) + [weak]
    Recorder = type("Recorder", (GradientCacheRecorder, __import__("robustkd").MultiTeacherDistiller), {})
    kw = dict(weighter__scheme="robust_precision", weighter__tau=0.1, weighter__n_steps=3, max_epochs=1,
              batch_size=64, train_split=None, verbose=0, random_state=0)
    d = Recorder(teachers, **kw).fit(X_train[:300], y_train[:300])
    w = d.train_dataset_.teacher_weights
    assert w.shape == (300, 4) and torch.allclose(w.sum(1), torch.ones(300), atol=1e-5)
    assert w[:, 3].mean() < 0.5 * w[:, 1].mean(), "the barely trained teacher is robust around few inputs"
    # cached once per fit == computed per batch (per-sample random starts), and recorded by TeacherWeights
    x, y = torch.as_tensor(X_train[:300]), torch.as_tensor(y_train[:300]).long()
    fresh = d.batch_weights({"X": x, "index": torch.arange(300)}, y)
    assert torch.allclose(fresh, w, atol=1e-5)
    assert np.allclose(d.mean_teacher_weights()[0], w.mean(0).numpy(), atol=2e-3)  # a mean of batch means
    uncached = type(d)(teachers, cache_teacher_outputs=False, **kw).fit(X_train[:300], y_train[:300])
    assert np.allclose(uncached.mean_teacher_weights(), d.mean_teacher_weights(), atol=1e-4)


def test_student_gap_weights_follow_the_student_as_it_learns(teacher_pool, digits):
    from robustkd.losses import distillation_loss
    from robustkd.weighting import teacher_weights
    X_train, _, y_train, _ = digits
    X, y = X_train[:300], y_train[:300]
    d = _distiller(teacher_pool, weighter="student_gap", weighter__tau=0.1, gradient_matching=0.0,
                   feature_matching=0.0, max_epochs=3).fit(X, y)
    x, yt = torch.as_tensor(X), torch.as_tensor(y).long()
    z = d.teacher_logits(x)
    with torch.no_grad():
        student = d.infer(x)
    expected = teacher_weights(z, None, "student_gap", tau=0.1, student_logits=student)
    assert torch.allclose(d.batch_weights(x, yt), expected, atol=1e-6), "the fitted student's own logits"
    # the loss weighs the teachers by the logits it is given, not by a cached or stale student
    other = z[:, 0].clone()
    loss = d.get_loss(other, yt, X=x, teacher_logits=z)
    w = teacher_weights(z, None, "student_gap", tau=0.1, student_logits=other)
    assert (w.argmax(1) == 0).all(), "a student that is teacher 0 follows teacher 0 most"
    assert torch.allclose(loss, distillation_loss(other, yt, z, w, d.temperature, d.alpha, d.kd,
                                                  criterion=d.criterion_, kd_student_logits=[other]), atol=1e-6)
    means = d.mean_teacher_weights()
    assert np.abs(means[0] - means[-1]).max() > 1e-3, "the weights move with the student between epochs"
    joblib_round_trip = pickle.loads(pickle.dumps(d))
    assert torch.allclose(joblib_round_trip.batch_weights(x, yt), expected, atol=1e-6)


def test_robust_precision_needs_teachers_with_a_threat_model(teacher_pool, standard_net, digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=r"teachers\[1\] \(.*\) has none: use AdversarialTeachers"):
        _distiller([teacher_pool.teachers_[0], standard_net.module_],
                   weighter="robust_precision").fit(X_train[:64], y_train[:64])
    with pytest.raises(ValueError, match="eps_scale must be a finite number > 0; got weighter__eps_scale=0"):
        _distiller(teacher_pool, weighter="robust_precision", weighter__eps_scale=0).fit(X_train[:64], y_train[:64])


def test_the_default_weighter_is_uniform_whatever_the_terms_and_the_teachers(teacher_pool, standard_net, digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:200], y_train[:200]
    d = _distiller(teacher_pool, max_epochs=1).fit(X, y)   # the default: with the feature term
    assert d.weighter_.scheme == "uniform" and d.gradient_weighter_ is None
    assert np.allclose(d.mean_teacher_weights()[-1], 1 / 3)
    plain = dict(feature_matching=0.0, gradient_matching=0.0, max_epochs=1)
    assert _distiller(teacher_pool, **plain).fit(X, y).weighter_.scheme == "uniform", \
        "no term changes what the default means"
    modules = _distiller([t.module_ for t in teacher_pool.teachers_], module=type(standard_net.module_),
                         module__input_shape=(1, 8, 8), **plain).fit(X, y)
    assert modules.weighter_.scheme == "uniform", "nor do teachers without a threat model"
    paper = _distiller(teacher_pool, weighter="confidence", **plain).fit(X, y)   # the paper's MTKD-AR, one line
    assert (paper.weighter_.scheme, paper.weighter_.tau) == ("confidence", 1.0)
    assert _distiller(teacher_pool, weighter="confidence", weighter__scheme="loss", **plain).fit(X, y) \
        .weighter_.scheme == "loss", "weighter__scheme wins over a name, as GridSearchCV sets it"


def test_the_gradient_term_can_have_its_own_weighter(teacher_pool, digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:200], y_train[:200]
    d = _distiller(teacher_pool, weighter="uniform", gradient_weighter="robust_precision", max_epochs=1).fit(X, y)
    x, yt = torch.as_tensor(X), torch.as_tensor(y).long()
    batch = {"X": x, "index": torch.arange(200)}
    w_grad, w_kd = d.gradient_weights(batch, yt), d.batch_weights(x, yt)
    assert torch.allclose(w_kd, torch.full_like(w_kd, 1 / 3)) and not torch.allclose(w_grad, w_kd, atol=1e-2)
    grads = d.frozen_teachers_.input_gradients(x, yt)
    assert torch.allclose(d.gradient_target(batch, yt), (w_grad.view(200, -1, 1, 1, 1) * grads).sum(1), atol=1e-5)
    with pytest.raises(TypeError, match="gradient_weighter must be None, an AdaptiveWeighter"):
        _distiller(teacher_pool, gradient_weighter=3).fit(X[:64], y[:64])


def test_a_norm_floor_keeps_nearly_vanishing_student_gradients_from_dominating():
    t = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])             # two samples, one teacher each
    w = torch.ones(2, 1)
    s = torch.tensor([[1e-6, 1e-6], [2.0, 0.0]], requires_grad=True)   # sample 0: a nearly vanishing gradient
    plain = gradient_matching_loss(s, t, w)
    assert torch.allclose(gradient_matching_loss(s, t, w, norm_floor=0.0), plain)
    plain_grad, = torch.autograd.grad(plain, s)
    floored = gradient_matching_loss(s, t, w, norm_floor=0.1)
    floored_grad, = torch.autograd.grad(floored, s)
    assert plain_grad[0].norm() > 1e4, "the plain cosine's gradient explodes as 1 / ||s_0||"
    assert floored_grad[0].norm() < 10 and torch.allclose(floored_grad[1], plain_grad[1], atol=1e-6)
    # above the floor nothing changes: the cosine of well-scaled gradients
    s2 = torch.tensor([[1.0, 1.0], [1.0, 3.0]])
    assert torch.allclose(gradient_matching_loss(s2, t, w, norm_floor=0.1), gradient_matching_loss(s2, t, w))


def test_union_robust_precision_reads_each_teacher_at_its_worst_threat_model(teacher_pool, digits):
    from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN
    from robustkd.attacks import get_attack, perturb, sample_seeds
    X_train, _, y_train, _ = digits
    l2 = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="pgd_l2", eps=1.0, max_epochs=2,
                            train_split=None, verbose=0, random_state=0).fit(X_train[:300], y_train[:300])
    teachers = [teacher_pool.teachers_[1], l2]          # L-inf PGD at 0.2, L2 PGD at 1.0
    kw = dict(weighter__scheme="robust_precision", weighter__n_steps=3, max_epochs=1, batch_size=64,
              train_split=None, verbose=0, random_state=0)
    d = MultiTeacherDistiller(teachers, weighter__threat_models="union", **kw).fit(X_train[:64], y_train[:64])
    x, y = torch.as_tensor(X_train[:64]), torch.as_tensor(y_train[:64]).long()
    index = torch.arange(64)
    union = d.teacher_adversarial_logits(x, y, index)
    models = [("pgd", 0.2), ("pgd_l2", 1.0)]            # the pool's threat models, in the teachers' order
    for k, teacher in enumerate(d.teachers_):
        by_model = []
        for j, (name, eps) in enumerate(models):
            attack = get_attack(name, teacher, eps=eps, nb_iter=3)
            x_adv = perturb(attack, x, y, sample_seeds=sample_seeds(0, index.numpy(), k if j == k else k + 2 * (j + 1)))
            with torch.no_grad():
                by_model.append(teacher(x_adv))
        p = torch.stack([F.log_softmax(z, 1).gather(1, y.view(-1, 1)).squeeze(1) for z in by_model])
        expected = torch.where((p[1] < p[0]).view(-1, 1), by_model[1], by_model[0])
        assert torch.allclose(union[:, k], expected, atol=1e-5), k
        assert (p[1] < p[0]).any() and (p[0] <= p[1]).any(), "each threat model is the worst on some inputs"
    own = MultiTeacherDistiller(teachers, **kw).fit(X_train[:64], y_train[:64])
    own_logits = own.teacher_adversarial_logits(x, y, index)
    true = lambda z: F.log_softmax(z, 2).gather(2, y.view(-1, 1, 1).expand(-1, 2, 1)).squeeze(2)  # noqa: E731
    assert (true(union) <= true(own_logits) + 1e-6).all(), "the union is never kinder than a teacher's own model"
    # a pool of one threat model: the union is the teacher's own threat model, weights identical
    pooled = [MultiTeacherDistiller(list(teacher_pool.teachers_), weighter__threat_models=t, **kw)
              .fit(X_train[:64], y_train[:64]).batch_weights({"X": x, "index": index}, y) for t in ("own", "union")]
    assert torch.allclose(pooled[0], pooled[1])
    with pytest.raises(ValueError, match=r"weighter__threat_models must be one of \['own', 'union'\]; got weighter__threat_models='all'"):
        MultiTeacherDistiller(teachers, weighter__threat_models="all", **kw).fit(X_train[:64], y_train[:64])
