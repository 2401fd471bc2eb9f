"""The lightweight CNN used in the MTKD-AR experiments."""
import numbers

from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Two conv blocks and a small classifier head; returns **logits**.

    Layers, for an input of shape ``(C, H, W)`` and ``channels=(c1, c2)``::

        Conv2d(C, c1, 3, padding=1) -> ReLU -> MaxPool2d(2)
        Conv2d(c1, c2, 3, padding=1) -> ReLU -> MaxPool2d(2)
        Flatten -> Linear(c2 * (H // 4) * (W // 4), hidden) -> ReLU -> Dropout(dropout)
        Linear(hidden, n_classes)

    With the defaults on 28x28 MNIST this has 421,642 parameters; on 8x8 digits,
    53,002. Inputs may also come flat, as ``(n, C * H * W)`` (e.g. after a
    scikit-learn transformer in a ``Pipeline``, or a pandas DataFrame of pixels), or, for
    one channel, without the channel axis as ``(n, H, W)``: they are reshaped to ``input_shape``.

    Parameters
    ----------
    input_shape : tuple of int, default=(1, 28, 28)
        ``(channels, height, width)`` of one input; height and width must be >= 4.
    n_classes : int, default=10
        Number of output logits.
    channels : tuple of two int, default=(32, 64)
        Output channels of the two conv blocks.
    hidden : int, default=128
        Width of the hidden linear layer.
    dropout : float, default=0.0
        Dropout probability before the last layer.

    Examples
    --------
    >>> import torch
    >>> from robustkd.models import SmallCNN
    >>> net = SmallCNN(input_shape=(1, 8, 8), n_classes=10)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape=(1, 28, 28), n_classes=10, channels=(32, 64), hidden=128, dropout=0.0):
        super().__init__()
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or not all(isinstance(s, numbers.Integral) and s > 0 for s in input_shape):
            raise ValueError(f"input_shape must be (channels, height, width) of positive ints; got {input_shape!r}")
        if min(input_shape[1:]) < 4:
            raise ValueError(f"input_shape height and width must be >= 4; got input_shape={input_shape!r}")
        for name, value in (("n_classes", n_classes), ("hidden", hidden)):
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {name}={value!r}")
        if len(channels) != 2:
            raise ValueError(f"channels must hold two ints; got channels={channels!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}")
        c, h, w = input_shape
        c1, c2 = channels
        self.input_shape = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, X):
        if X.dim() == 2 or (X.dim() == 3 and self.input_shape[0] == 1):
            X = X.reshape(-1, *self.input_shape)
        return self.classifier(self.features(X))
