"""Image datasets as ``(n, channels, height, width)`` float32 arrays in [0, 1].

``load_digits_images`` (scikit-learn's bundled 8x8 digits) needs no download and is
the library's default data. MNIST and Fashion-MNIST come through torchvision, from
``data_home`` (torchvision's layout: ``data_home/MNIST/raw``,
``data_home/FashionMNIST/raw``), downloaded there only when ``download=True``.
"""
import os

import numpy as np

__all__ = ["get_data_home", "load_digits_images", "load_mnist", "load_fashion_mnist"]


def get_data_home(data_home=None):
    """Return the data folder: ``data_home``, else ``$ROBUSTKD_DATA``, else ``~/robustkd_data``.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder to use; ``~`` is expanded.

    Returns
    -------
    str
        Absolute path of the data folder.
    """
    if data_home is None:
        data_home = os.environ.get("ROBUSTKD_DATA", os.path.join("~", "robustkd_data"))
    return os.path.abspath(os.path.expanduser(os.fspath(data_home)))


def load_digits_images():
    """Load scikit-learn's bundled 8x8 handwritten digits as images.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), float32
        Pixel intensities scaled from 0..16 to [0, 1].
    y : ndarray of shape (1797,), int64
        Digit labels 0..9.

    Examples
    --------
    >>> from robustkd.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> X.shape, X.dtype, float(X.max()), y.dtype
    ((1797, 1, 8, 8), dtype('float32'), 1.0, dtype('int64'))
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return X, digits.target.astype(np.int64)


def _load_torchvision(cls_name, data_home, train, download):
    import torchvision.datasets

    if not isinstance(train, bool):
        raise TypeError(f"train must be True (training set) or False (test set); got train={train!r}")
    root = get_data_home(data_home)
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=root, train=train, download=download)
    except RuntimeError as exc:
        if download:
            raise
        raise FileNotFoundError(
            f"{cls_name} not found under data_home={root!r} (expected {os.path.join(root, cls_name, 'raw')}); "
            "pass download=True to fetch it, or data_home= pointing at the folder that holds "
            f"{cls_name}/raw"
        ) from exc
    X = (ds.data.numpy().astype(np.float32) / 255.0)[:, None, :, :]
    return X, ds.targets.numpy().astype(np.int64)


def load_mnist(data_home=None, *, train=True, download=False):
    """Load MNIST through torchvision.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder holding ``MNIST/raw`` (see :func:`get_data_home` for the default).
    train : bool, default=True
        The 60,000-image training set if True, else the 10,000-image test set.
    download : bool, default=False
        Download the files into ``data_home`` if they are missing.

    Returns
    -------
    X : ndarray of shape (n, 1, 28, 28), float32 in [0, 1]
        Images scaled from 0..255.
    y : ndarray of shape (n,), int64
        Class labels 0..9.

    Raises
    ------
    FileNotFoundError
        The data is not in ``data_home`` and ``download`` is False.
    """
    return _load_torchvision("MNIST", data_home, train, download)


def load_fashion_mnist(data_home=None, *, train=True, download=False):
    """Load Fashion-MNIST through torchvision.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder holding ``FashionMNIST/raw`` (see :func:`get_data_home` for the default).
    train : bool, default=True
        The 60,000-image training set if True, else the 10,000-image test set.
    download : bool, default=False
        Download the files into ``data_home`` if they are missing.

    Returns
    -------
    X : ndarray of shape (n, 1, 28, 28), float32 in [0, 1]
        Images scaled from 0..255.
    y : ndarray of shape (n,), int64
        Class labels 0..9.

    Raises
    ------
    FileNotFoundError
        The data is not in ``data_home`` and ``download`` is False.
    """
    return _load_torchvision("FashionMNIST", data_home, train, download)


