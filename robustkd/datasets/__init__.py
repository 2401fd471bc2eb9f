"""Image datasets as ``(n, channels, height, width)`` float32 arrays in [0, 1].

``load_digits_images`` (scikit-learn's bundled 8x8 digits) needs no download and is
the library's default data. MNIST and Fashion-MNIST come through torchvision, from
``data_home`` (torchvision's layout: ``data_home/MNIST/raw``,
``data_home/FashionMNIST/raw``), downloaded there only when ``download=True``.
"""
from ._loaders import get_data_home, load_digits_images, load_fashion_mnist, load_mnist
from ._registry import DATASETS, DatasetSpec, dataset_names, dataset_to_arrays, load_split, register_dataset

__all__ = ["get_data_home", "load_digits_images", "load_mnist", "load_fashion_mnist", "load_split", "DATASETS",
           "DatasetSpec", "dataset_names", "register_dataset", "dataset_to_arrays"]
