"""
What an adversarial example looks like
======================================

Train a standard :class:`~robustkd.models.SmallCNN` on the bundled 8x8 digits, then perturb
a few test digits with PGD at two budgets. Each pixel moves by at most ``eps`` (on a 0..1
scale), yet the predictions change. The bottom row shows the perturbation, scaled up.
"""

# %%
import matplotlib.pyplot as plt
import torch
from sklearn.model_selection import train_test_split

from robustkd import AdversarialTeacher, SmallCNN, get_attack, load_digits_images
from robustkd.attacks import perturb

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
net = AdversarialTeacher(SmallCNN, attack=None, module__input_shape=(1, 8, 8), max_epochs=15,
                         train_split=None, verbose=0, random_state=0).fit(X_train, y_train)

# %%
# Attack five test digits that the model gets right, at eps = 0.1 and 0.2.
x = torch.from_numpy(X_test[:5])
labels = torch.from_numpy(y_test[:5])
rows = [("clean", x)]
for eps in (0.1, 0.2):
    attack = get_attack("pgd", net.module_, eps=eps)
    rows.append((f"PGD, eps={eps}", perturb(attack, x, labels)))

fig, axes = plt.subplots(len(rows) + 1, 5, figsize=(7, 6))
for r, (name, images) in enumerate(rows):
    predicted = net.predict(images.numpy())
    for c in range(5):
        axes[r, c].imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_title(f"pred {predicted[c]}", fontsize=8, color="black" if predicted[c] == y_test[c] else "red")
        axes[r, c].axis("off")
    axes[r, 0].text(-6, 4, name, fontsize=8, ha="right", va="center")
for c in range(5):
    axes[-1, c].imshow((rows[-1][1] - x)[c, 0], cmap="coolwarm", vmin=-0.2, vmax=0.2)
    axes[-1, c].axis("off")
axes[-1, 0].text(-6, 4, "perturbation\n(eps=0.2)", fontsize=8, ha="right", va="center")
fig.suptitle("Clean digits and PGD adversarial examples (red: wrong prediction)")
plt.tight_layout()
plt.show()
