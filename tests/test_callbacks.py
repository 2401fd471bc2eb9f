"""The contract every callback in robustkd.callbacks keeps, as skorch tests its own callbacks."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch.dataset import ValidSplit

from robustkd import AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, callbacks, load_digits_images
from robustkd.experiments._progress import EpochLog, format_seconds

X, Y = load_digits_images()
EXAMPLES = {
    "RobustAccuracy": lambda: callbacks.RobustAccuracy(X[1700:1720], Y[1700:1720], attack="pgd", eps=0.1,
                                                       attack_params={"nb_iter": 2}),
    "RobustEarlyStopping": lambda: callbacks.RobustEarlyStopping(max_samples=16, attack_params={"nb_iter": 2}),
    "OneCycleSchedule": lambda: callbacks.OneCycleSchedule(max_lr=0.002),
    "EpsilonWarmup": lambda: callbacks.EpsilonWarmup(epochs=0.5, start=0.1),
    "WeightAveraging": lambda: callbacks.WeightAveraging(decay=0.99),
    "EpochLog": lambda: EpochLog("teacher_{attack}"),   # the command line's, held to the same contract
    "TeacherWeights": lambda: callbacks.TeacherWeights(),
}


def test_every_callback_has_an_example():
    assert set(EXAMPLES) == set(callbacks.__all__) | {"EpochLog"}


def _params(cb):
    return {k: v for k, v in cb.get_params().items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k], k


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_callback_clones_round_trips_params_and_pickles(name):
    cb = EXAMPLES[name]()
    _same(_params(clone(cb)), _params(cb))
    again = type(cb)(**cb.get_params())
    _same(_params(again), _params(cb))
    _same(_params(pickle.loads(pickle.dumps(cb))), _params(cb))
    if name == "RobustAccuracy":
        cb.set_params(eps=0.2, attack_params={"nb_iter": 3})
        assert cb.eps == 0.2 and cb.attack_params == {"nb_iter": 3}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_nets_carrying_the_callback_clone_fit_and_search(name):
    split = ValidSplit(4, stratified=False) if name == "RobustEarlyStopping" else None  # it needs validation data
    net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm", max_epochs=1,
                             train_split=split, verbose=0, random_state=0, callbacks=[EXAMPLES[name]()])
    if name == "TeacherWeights":  # a distiller's callback: it reads the teachers' weights
        teacher = clone(net).set_params(callbacks=None).fit(X[:64], Y[:64])
        net = MultiTeacherDistiller([teacher, teacher], max_epochs=1, train_split=None, verbose=0, random_state=0,
                                    callbacks=[("weights_again", EXAMPLES[name]())])
    fitted = clone(net).fit(X[:64], Y[:64])
    assert len(fitted.history) == 1
    if name != "TeacherWeights":
        pool = TeacherPool(net, attacks=["fgsm", "pgd"], random_state=0).fit(X[:64], Y[:64])
        assert [t.attack for t in pool.teachers_] == ["fgsm", "pgd"]
    search = GridSearchCV(net, {"lr": [1e-3, 1e-2]}, cv=2).fit(X[:64], Y[:64])
    assert len(search.cv_results_["params"]) == 2
    pickle.loads(pickle.dumps(fitted))


def test_epoch_log_writes_one_line_per_epoch(caplog):
    net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm", max_epochs=3,
                             train_split=None, verbose=0, callbacks=[EpochLog("teacher_{attack}")])
    with caplog.at_level("INFO", logger="robustkd.progress"):
        net.fit(X[:64], Y[:64])
    lines = [r.getMessage() for r in caplog.records if r.name == "robustkd.progress"]
    assert [line.split(" loss ")[0] for line in lines] == [f"teacher_fgsm epoch {e}/3" for e in (1, 2, 3)]
    assert lines[-1].endswith("about 0s left for this model")
    assert format_seconds(3725) == "1:02:05" and format_seconds(125) == "2:05"


def test_teacher_weights_records_each_batch_and_the_epoch_mean():
    teacher = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack="fgsm", max_epochs=1,
                                 train_split=None, verbose=0, random_state=0).fit(X[:64], Y[:64])
    student = MultiTeacherDistiller([teacher, teacher], weighter__scheme="confidence", max_epochs=2, batch_size=16,
                                    train_split=None, verbose=0, random_state=0).fit(X[:64], Y[:64])
    batches = student.history[-1]["batches"]
    assert len(batches) == 4 and all(b["weight_t0"] == pytest.approx(0.5) for b in batches)   # identical teachers
    assert student.mean_teacher_weights().shape == (2, 2)
    assert np.allclose(student.mean_teacher_weights(), 0.5)
