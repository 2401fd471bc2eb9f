"""WeightAveraging: the documented moving average, held after fit, resumed exactly, and bad decays refused."""
import io

import joblib
import pytest
import torch
from skorch.callbacks import Callback
from torch import nn

from robustkd import AdversarialTeacher, SmallCNN
from robustkd.callbacks import WeightAveraging


class BatchNormNet(nn.Module):
    """A tiny net with buffers: BatchNorm's running statistics (float) and batch count (integer)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))

    def forward(self, x):
        return self.body(x)


class Snapshots(Callback):
    """The module's state after every training batch."""

    def __init__(self):
        self.states = []

    def initialize(self):
        self.states = []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.states.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})


def net(module=SmallCNN, **kwargs):
    params = dict(attack=None, max_epochs=3, batch_size=64, train_split=None, verbose=0, random_state=0, lr=0.01)
    if module is SmallCNN:
        params["module__input_shape"] = (1, 8, 8)
    return AdversarialTeacher(module, **{**params, **kwargs})


@pytest.mark.parametrize("module", [SmallCNN, BatchNormNet])
def test_the_net_holds_the_documented_average_of_its_weights_after_fit(digits, module):
    X_train, _, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    snapshots, averaging = Snapshots(), WeightAveraging(decay=0.8)
    fitted = net(module, callbacks=[averaging, snapshots]).fit(X, y)
    states = snapshots.states
    assert len(states) == averaging.n_updates_ == 12   # 3 epochs of 4 batches
    expected = dict(states[0])
    for n, state in enumerate(states[1:], start=1):
        d = min(0.8, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * v if v.is_floating_point() else v for k, v in state.items()}
    held = fitted.module_.state_dict()
    for k in held:
        assert torch.allclose(held[k], expected[k], atol=1e-6), k
        assert torch.equal(averaging.trained_[k], states[-1][k]), k   # the trained weights are kept
    # the average is not the last iterate: predictions come from the average
    assert any(not torch.equal(held[k], states[-1][k]) for k in held if held[k].is_floating_point())
    if module is BatchNormNet:   # integer buffers are copied, float buffers averaged
        assert held["body.1.num_batches_tracked"].item() == 12
        assert not torch.equal(held["body.1.running_mean"], states[-1]["body.1.running_mean"])


def test_a_fit_continued_after_saving_ends_as_the_uninterrupted_fit(digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:256], y_train[:256]
    full = net(max_epochs=4, callbacks=[WeightAveraging(decay=0.9)]).fit(X, y)
    half = net(max_epochs=4, callbacks=[WeightAveraging(decay=0.9)])
    half.partial_fit(X, y, epochs=2)
    averaging = dict(half.callbacks_)["WeightAveraging"]
    assert all(torch.equal(p, averaging.average_[k]) for k, p in half.module_.state_dict().items())
    buffer = io.BytesIO()
    joblib.dump(half, buffer)
    buffer.seek(0)
    resumed = joblib.load(buffer)
    resumed.partial_fit(X, y, epochs=2)   # starts from the trained weights, not the average
    for (k, p), q in zip(full.module_.state_dict().items(), resumed.module_.state_dict().values()):
        assert torch.equal(p, q), k
    # a fit that re-initialises the net starts a new average: fitting again repeats the first fit
    again = full.fit(X, y)
    assert dict(again.callbacks_)["WeightAveraging"].n_updates_ == 16
    for (k, p), q in zip(again.module_.state_dict().items(), resumed.module_.state_dict().values()):
        assert torch.equal(p, q), k


@pytest.mark.parametrize("decay", [0, 1.0, 1.5, True, "0.9", None])
def test_a_decay_outside_the_open_unit_interval_is_refused(digits, decay):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=r"decay must be a finite number in \(0, 1\); got decay="):
        net(max_epochs=1, callbacks=[WeightAveraging(decay=decay)]).fit(X_train[:64], y_train[:64])
