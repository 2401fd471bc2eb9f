import numpy as np
import pytest
import torch

from robustkd.datasets import get_data_home, load_digits_images, load_fashion_mnist, load_mnist
from robustkd.models import SmallCNN


def test_digits_images_layout():
    X, y = load_digits_images()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


def test_fashion_mnist_loads_from_shared_data(fashion_home):
    X, y = load_fashion_mnist(fashion_home, train=False)
    assert X.shape == (10000, 1, 28, 28) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [1000] * 10
    X_train, _ = load_fashion_mnist(fashion_home, train=True)
    assert X_train.shape == (60000, 1, 28, 28)


@pytest.mark.parametrize("loader, folder", [(load_mnist, "MNIST"), (load_fashion_mnist, "FashionMNIST")])
def test_missing_data_without_download_is_a_clear_error(tmp_path, loader, folder):
    with pytest.raises(FileNotFoundError, match=f"{folder} not found under data_home=.*download=True"):
        loader(tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing may be downloaded or created"


def test_train_flag_is_checked(tmp_path):
    with pytest.raises(TypeError, match="train must be True"):
        load_mnist(tmp_path, train="test")


def test_data_home_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTKD_DATA", str(tmp_path))
    assert get_data_home() == str(tmp_path)
    assert get_data_home("~/x").endswith("/x") and "~" not in get_data_home("~/x")


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_small_cnn_fits_each_input_shape(shape):
    net = SmallCNN(input_shape=shape, n_classes=7)
    assert net(torch.rand(3, *shape)).shape == (3, 7)
    flat = torch.rand(3, int(np.prod(shape)))
    assert torch.allclose(net(flat), net(flat.reshape(3, *shape)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(8, 8)), "input_shape must be"), (dict(input_shape=(1, 3, 3)), "height and width"),
    (dict(n_classes=0), "n_classes must be a positive integer; got n_classes=0"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
])
def test_small_cnn_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallCNN(**kwargs)


def test_unknown_dataset_name_lists_the_known_ones():
    from robustkd.datasets import load_split

    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar10'; known datasets are \['digits', 'mnist', "
                                         r"'fashion-mnist'\]"):
        load_split("cifar10")
