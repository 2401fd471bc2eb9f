"""
Robust scoring of a standard model
==================================

Train a standard :class:`~robustkd.models.SmallCNN` on the bundled 8x8 digits and
measure its accuracy under FGSM and PGD at several budgets. A standard model is
accurate on clean inputs and collapses under small perturbations.
"""

# %%
import matplotlib.pyplot as plt
import torch
from skorch import NeuralNetClassifier
from sklearn.model_selection import train_test_split

from robustkd import SmallCNN, load_digits_images, plot_robustness_curves, robustness_report

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
torch.manual_seed(0)
net = NeuralNetClassifier(SmallCNN, module__input_shape=(1, 8, 8), criterion=torch.nn.CrossEntropyLoss,
                          optimizer=torch.optim.Adam, lr=1e-3, max_epochs=15, train_split=None, verbose=0)
net.fit(X_train, y_train)

# %%
# Accuracy under attack, per attack and budget, and the worst case per sample.
report = robustness_report(net, X_test, y_test, attacks=["fgsm", "pgd"], eps=[0.05, 0.1, 0.2, 0.3],
                           random_state=0)
for row in report:
    print(f"{row['attack']:>10}  eps={row['eps']:<5} accuracy={row['accuracy']:.3f}")

# %%
plot_robustness_curves(report)
plt.title("Standard SmallCNN on digits")
plt.show()
