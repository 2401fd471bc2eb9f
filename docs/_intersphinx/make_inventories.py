"""Write the small offline fallback inventories used by conf.py's intersphinx_mapping.

Each holds only the objects robustkd's docs link to. Run: ``python docs/_intersphinx/make_inventories.py``.
"""
import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

INVENTORIES = {
    "python": ("Python", [("dict", "py:class", "library/stdtypes.html#dict")]),
    "numpy": ("NumPy", [("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html")]),
    "torch": ("PyTorch", [
        ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html"),
        ("torch.Tensor", "py:class", "tensors.html#torch.Tensor"),
        ("torch.nn.CrossEntropyLoss", "py:class", "generated/torch.nn.CrossEntropyLoss.html"),
    ]),
    "sklearn": ("scikit-learn", [
        ("sklearn.model_selection.GridSearchCV", "py:class",
         "modules/generated/sklearn.model_selection.GridSearchCV.html"),
        ("sklearn.pipeline.Pipeline", "py:class", "modules/generated/sklearn.pipeline.Pipeline.html"),
        ("sklearn.base.clone", "py:function", "modules/generated/sklearn.base.clone.html"),
    ]),
    "skorch": ("skorch", [
        ("skorch.NeuralNetClassifier", "py:class", "classifier.html#skorch.classifier.NeuralNetClassifier"),
        ("skorch.classifier.NeuralNetClassifier", "py:class",
         "classifier.html#skorch.classifier.NeuralNetClassifier"),
    ]),
}


def main():
    for name, (project, entries) in INVENTORIES.items():
        header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
                  "# The remainder of this file is compressed using zlib.\n").encode()
        body = "".join(f"{obj} {role} 1 {uri} -\n" for obj, role, uri in entries).encode()
        with open(os.path.join(HERE, f"{name}.inv"), "wb") as f:
            f.write(header + zlib.compress(body))


if __name__ == "__main__":
    main()
