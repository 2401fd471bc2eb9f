"""
Training an adversarial teacher
===============================

An :class:`~robustkd.AdversarialTeacher` is a skorch classifier that replaces each
training batch with PGD examples crafted against its current weights. Compared with
a standard model of the same architecture, it gives up a little clean accuracy and
gains a lot under attack. The :class:`~robustkd.RobustAccuracy` callback tracks
robustness on a held-out slice of the *training* data while it trains.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from robustkd import AdversarialTeacher, RobustAccuracy, SmallCNN, load_digits_images, robust_score

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.15, random_state=0, stratify=y_train)

common = dict(module__input_shape=(1, 8, 8), eps=0.2, max_epochs=15, batch_size=64, train_split=None,
              verbose=0, random_state=0)
standard = AdversarialTeacher(SmallCNN, attack=None, **common).fit(X_fit, y_fit)
teacher = AdversarialTeacher(SmallCNN, attack="pgd", attack__nb_iter=10,
                             callbacks=[RobustAccuracy(X_val, y_val, attack="pgd", eps=0.2)], **common)
teacher.fit(X_fit, y_fit)

# %%
# Clean accuracy and accuracy under PGD-10 at eps=0.2, on the test split.
for name, net in [("standard", standard), ("PGD teacher", teacher)]:
    print(f"{name:>12}: clean {net.score(X_test, y_test):.3f}, "
          f"PGD {robust_score(net, X_test, y_test, 'pgd', eps=0.2, random_state=0):.3f}")

# %%
# Robust accuracy on the held-out slice, epoch by epoch.
plt.plot(teacher.history[:, "epoch"], teacher.history[:, "robust_acc"], marker="o")
plt.xlabel("epoch")
plt.ylabel("PGD accuracy (eps=0.2), held-out slice")
plt.title("Adversarial training on digits")
plt.show()
