"""
Distilling three teachers into one student
==========================================

Three clones of one CNN are trained adversarially, against FGSM, PGD and MIM. A
:class:`~robustkd.MultiTeacherDistiller` then trains a student **on clean data only**
from the true labels and the teachers' softened outputs, each teacher weighted per
input by how confident it is of the true class.
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
student = MultiTeacherDistiller(pool, weighter__scheme="confidence", temperature=4.0, alpha=0.9, max_epochs=15,
                                batch_size=64, train_split=None, verbose=0, random_state=0).fit(X_train, y_train)

# %%
for name, net in [(f"teacher {t.attack}", t) for t in pool.teachers_] + [("student", student)]:
    print(f"{name:>14}: clean {net.score(X_test, y_test):.3f}, "
          f"PGD {robust_score(net, X_test, y_test, 'pgd', eps=0.2, random_state=0):.3f}")

# %%
# The mean weight each teacher received in the last epoch.
weights = student.mean_teacher_weights()[-1]
plt.bar([t.attack for t in pool.teachers_], weights)
plt.ylabel("mean weight")
plt.title("Teacher weights (confidence scheme)")
plt.show()
