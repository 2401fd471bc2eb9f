"""
Choosing a weighting scheme with GridSearchCV
=============================================

The weighting scheme is a parameter of the distiller (``weighter__scheme``), so
scikit-learn's ``GridSearchCV`` can choose it, here by accuracy under FGSM with
:func:`~robustkd.make_robust_scorer`. The teachers are shared by every candidate; only
the students are trained per split.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.model_selection import GridSearchCV, train_test_split

from robustkd import (AdversarialTeacher, MultiTeacherDistiller, SmallCNN, TeacherPool, load_digits_images,
                      make_robust_scorer)
from robustkd.weighting import SCHEMES

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
template = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), eps=0.2, attack__nb_iter=5, max_epochs=8,
                              batch_size=64, train_split=None, verbose=0)
pool = TeacherPool(template, attacks=["fgsm", "pgd"], random_state=0).fit(X_train, y_train)

search = GridSearchCV(
    MultiTeacherDistiller(pool, max_epochs=8, batch_size=64, train_split=None, verbose=0, random_state=0),
    {"weighter__scheme": list(SCHEMES)},
    scoring=make_robust_scorer("fgsm", eps=0.2, random_state=0), cv=3)
search.fit(X_train, y_train)
print("best scheme:", search.best_params_["weighter__scheme"])

# %%
means, stds = search.cv_results_["mean_test_score"], search.cv_results_["std_test_score"]
plt.bar(SCHEMES, means, yerr=stds)
plt.ylabel("FGSM accuracy (eps=0.2), 3-fold CV")
plt.title("Weighting schemes")
plt.show()
