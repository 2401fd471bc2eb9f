"""
Accuracy-vs-eps curves for several models
=========================================

:func:`~robustkd.robustness_report` gives clean accuracy, accuracy per attack and eps,
and the worst case per sample. Tag the rows of several reports with a ``method``
column and :func:`~robustkd.plot_robustness_curves` draws one line per method.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from robustkd import (AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, load_digits_images,
                      plot_robustness_curves, robustness_report)

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
common = dict(module__input_shape=(1, 8, 8), eps=0.2, attack__nb_iter=5, max_epochs=8, batch_size=64,
              train_split=None, verbose=0)
standard = AdversarialTeacher(SmallCNN, attack=None, random_state=0, **common).fit(X_train, y_train)
pool = TeacherPool(AdversarialTeacher(SmallCNN, **common), attacks=["fgsm", "pgd"],
                   random_state=0).fit(X_train, y_train)
student = MultiTeacherDistiller(pool, max_epochs=15, batch_size=64, train_split=None, verbose=0,
                                random_state=0).fit(X_train, y_train)

rows = []
for name, model in [("standard", standard), ("PGD teacher", pool.teachers_[1]), ("robustkd default student", student)]:
    report = robustness_report(model, X_test, y_test, attacks=["fgsm", "pgd"], eps=[0.05, 0.1, 0.2, 0.3],
                               random_state=0)
    rows += [dict(row, method=name) for row in report]

# %%
# Worst case over FGSM and PGD, per sample.
fig, ax = plt.subplots(figsize=(6, 4))
plot_robustness_curves(rows, ax=ax, group_by="method")
ax.set_title("Worst case over FGSM and PGD")
plt.show()
