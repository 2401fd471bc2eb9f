"""
Distilling three teachers into one student
==========================================

Three clones of one CNN are trained adversarially, against FGSM, PGD and MIM. A
:class:`~robustkd.MultiTeacherDistiller` then trains a student **on clean data only**
from the true labels and the teachers' softened outputs. Two students are compared:

* **the paper's MTKD-AR**: each teacher weighted per input by how confident it is of the true class
  (``weighter="confidence"``), no term beyond the paper (``gradient_matching=0, feature_matching=0``);
* **robustkd's default**: equal weights, with the student's input gradients and features pulled towards the
  teachers' (``MultiTeacherDistiller(pool)``).
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from robustkd import (AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, load_digits_images,
                      robust_score)

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), eps=0.2, attack__nb_iter=5, max_epochs=8,
                              batch_size=64, train_split=None, verbose=0)
pool = TeacherPool(template, attacks=["fgsm", "pgd", "mim"], random_state=0).fit(X_train, y_train)
common = dict(max_epochs=15, batch_size=64, train_split=None, verbose=0, random_state=0)
paper = MultiTeacherDistiller(pool, weighter="confidence", gradient_matching=0, feature_matching=0,
                              **common).fit(X_train, y_train)
default = MultiTeacherDistiller(pool, **common).fit(X_train, y_train)

# %%
students = [("paper's MTKD-AR", paper), ("robustkd default", default)]
for name, net in [(f"teacher {t.attack}", t) for t in pool.teachers_] + students:
    print(f"{name:>16}: clean {net.score(X_test, y_test):.3f}, "
          f"PGD {robust_score(net, X_test, y_test, 'pgd', eps=0.2, random_state=0):.3f}")

# %%
# The mean weight each teacher received in the last epoch from the paper's confidence weights (the default's
# are equal: 1/3 each).
weights = paper.mean_teacher_weights()[-1]
plt.bar([t.attack for t in pool.teachers_], weights)
plt.ylabel("mean weight")
plt.title("Teacher weights of the paper's MTKD-AR (confidence scheme)")
plt.show()
