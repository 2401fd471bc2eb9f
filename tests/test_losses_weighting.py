import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from robustkd import AdaptiveWeighter
from robustkd.losses import distillation_loss, mixture_kd_loss, weighted_sum_kd_loss
from robustkd.weighting import SCHEMES, teacher_weights


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 5), c=st.integers(2, 11), scale=st.floats(0.01, 100.0),
       tau=st.floats(0.05, 10.0), seed=st.integers(0, 10_000), scheme=st.sampled_from(SCHEMES))
def test_every_scheme_gives_a_stochastic_matrix(n, k, c, scale, tau, seed, scheme):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, c, generator=g) * scale
    y = torch.randint(0, c, (n,), generator=g)
    student = torch.randn(n, c, generator=g) * scale       # read by the schemes that use the student only
    w = teacher_weights(logits, y, scheme=scheme, tau=tau, student_logits=student)
    assert w.shape == (n, k) and torch.isfinite(w).all()
    assert (w >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(n), atol=1e-5)


def test_uniform_is_exactly_one_over_n():
    w = teacher_weights(torch.randn(7, 3, 10), scheme="uniform")
    assert torch.equal(w, torch.full((7, 3), 1 / 3))


def _logits():
    # sample 0: teacher 0 right and sure, teacher 1 wrong; sample 1: teacher 1 right and sure
    return torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]],
                         [[0.0, 1.0, 0.9], [0.0, 6.0, 0.0]]]), torch.tensor([0, 1])


@pytest.mark.parametrize("scheme", ["confidence", "loss", "camkd"])
def test_label_aware_schemes_favour_the_teacher_that_is_right_on_each_sample(scheme):
    logits, y = _logits()
    w = teacher_weights(logits, y, scheme=scheme, tau=0.2)
    assert w[0, 0] > w[0, 1] and w[1, 1] > w[1, 0]


def test_formulas_match_their_definitions():
    logits, y = _logits()
    ce = -F.log_softmax(logits, 2).gather(2, y.view(-1, 1, 1).expand(-1, 2, 1)).squeeze(2)
    assert torch.allclose(teacher_weights(logits, y, "loss", tau=0.5), F.softmax(-ce / 0.5, 1))
    assert torch.allclose(teacher_weights(logits, y, "confidence", tau=0.5), F.softmax(torch.exp(-ce) / 0.5, 1))
    assert torch.allclose(teacher_weights(logits, y, "camkd"), (1 - F.softmax(ce, 1)) / 1)
    p = F.softmax(logits, 2)
    entropy = -(p * p.log()).sum(2)
    assert torch.allclose(teacher_weights(logits, None, "entropy", tau=2.0), F.softmax(-entropy / 2.0, 1))
    # batch accuracy: teacher 0 right on 1 of 2 samples... (argmax of sample 1 for teacher 0 is class 1: right)
    acc = torch.tensor([1.0, 0.5])
    assert torch.allclose(teacher_weights(logits, y, "accuracy"), (acc / acc.sum()).expand(2, 2))


def test_student_gap_leads_with_the_teachers_the_student_is_closest_to():
    logits, y = _logits()
    student = torch.tensor([[4.0, 0.5, 0.0], [0.0, 1.0, 1.0]])  # near teacher 0 on sample 0, teacher 0 on 1 too
    p, log_q = F.softmax(logits, 2), F.log_softmax(student, 1).unsqueeze(1)
    kl = (p * (p.log() - log_q)).sum(2)
    w = teacher_weights(logits, None, "student_gap", tau=0.5, student_logits=student)
    assert torch.allclose(w, F.softmax(-kl / 0.5, 1))
    assert w[0, 0] > w[0, 1] and w[1, 0] > w[1, 1], "labels play no part: the student's neighbour leads"
    same = teacher_weights(logits, None, "student_gap", tau=0.05, student_logits=logits[:, 1])
    assert (same[:, 1] > 0.99).all(), "a teacher the student matches exactly takes (nearly) all the weight"
    assert AdaptiveWeighter("student_gap").uses_student and not AdaptiveWeighter("confidence").uses_student


@pytest.mark.parametrize("student, match", [
    (None, r"scheme='student_gap' needs the student's logits \(student_logits\)"),
    (torch.zeros(2, 4), r"student_logits must have shape \(2, 3\); got \(2, 4\)"),
])
def test_student_gap_needs_the_students_logits(student, match):
    logits, _ = _logits()
    with pytest.raises(ValueError, match=match):
        teacher_weights(logits, scheme="student_gap", student_logits=student)


def test_a_scheme_cannot_read_both_the_student_and_adversarial_examples():
    from robustkd.weighting import register_scheme
    with pytest.raises(ValueError, match="uses_student and adversarial cannot be combined"):
        register_scheme("both", lambda z, y, tau, s: torch.ones(z.shape[:2]), needs_labels=False,
                        uses_student=True, adversarial=True)


def test_accuracy_falls_back_to_uniform_when_no_teacher_is_right():
    logits = torch.tensor([[[0.0, 5.0], [0.0, 3.0]]])
    assert torch.equal(teacher_weights(logits, torch.tensor([0]), "accuracy"), torch.tensor([[0.5, 0.5]]))


def test_callable_scheme_is_normalised_and_checked():
    w = teacher_weights(torch.randn(4, 2, 3), scheme=lambda z, y: torch.tensor([[1.0, 3.0]] * 4))
    assert torch.equal(w, torch.tensor([[0.25, 0.75]] * 4))
    with pytest.raises(ValueError, match=r"non-negative weights of shape \(4, 2\)"):
        teacher_weights(torch.randn(4, 2, 3), scheme=lambda z, y: -torch.ones(4, 2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(scheme="best"), r"scheme must be one of \['uniform', 'accuracy', 'confidence', 'loss', 'entropy', 'camkd'"),
    (dict(scheme="loss"), r"scheme='loss' needs the true labels y"),
    (dict(scheme="entropy", tau=0), r"tau must be a finite number > 0; got tau=0"),
])
def test_bad_weighting_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        teacher_weights(torch.randn(3, 2, 4), **kwargs)


def test_adaptive_weighter_is_a_clonable_estimator():
    w = AdaptiveWeighter(scheme="entropy", tau=0.3)
    twin = clone(w)
    assert twin.get_params() == {"scheme": "entropy", "tau": 0.3, "eps_scale": 1.0, "n_steps": 5,
                                 "threat_models": "own"} and twin is not w
    assert twin.set_params(scheme="uniform")(torch.randn(2, 4, 3)).tolist() == [[0.25] * 4] * 2
    assert AdaptiveWeighter("uniform").needs_labels is False and AdaptiveWeighter("camkd").needs_labels


def test_mixture_and_sum_losses_have_the_same_student_gradient():
    torch.manual_seed(0)
    teachers, weights = torch.randn(8, 3, 5), torch.softmax(torch.randn(8, 3), 1)
    grads = []
    for fn in (mixture_kd_loss, weighted_sum_kd_loss):
        s = torch.randn(8, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        fn(s, teachers, weights, temperature=3.0).backward()
        grads.append(s.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    s = torch.randn(8, 5)
    assert weighted_sum_kd_loss(s, teachers, weights) >= mixture_kd_loss(s, teachers, weights) - 1e-6


def test_distillation_loss_limits():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 4), torch.randn(6, 2, 4), torch.randint(0, 4, (6,))
    w = torch.full((6, 2), 0.5)
    assert torch.allclose(distillation_loss(s, y, t, w, alpha=0.0), F.cross_entropy(s, y))
    assert torch.allclose(distillation_loss(s, y, t, w, alpha=1.0, temperature=2.0),
                          mixture_kd_loss(s, t, w, temperature=2.0))
    one_teacher = t[:, :1]
    expected = 4.0 * F.kl_div(F.log_softmax(s / 2, 1), F.softmax(one_teacher[:, 0] / 2, 1), reduction="batchmean")
    assert torch.allclose(mixture_kd_loss(s, one_teacher, torch.ones(6, 1), 2.0), expected)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kd="max"), r"kd must be one of \['mixture', 'sum'\]"),
    (dict(alpha=1.5), r"alpha must be in \[0, 1\]"),
    (dict(temperature=0.0), r"temperature must be > 0"),
])
def test_distillation_loss_rejects_bad_arguments(kwargs, match):
    s, t, y = torch.randn(2, 3), torch.randn(2, 2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=match):
        distillation_loss(s, y, t, torch.full((2, 2), 0.5), **kwargs)
