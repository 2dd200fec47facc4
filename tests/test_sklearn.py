"""The scikit-learn estimators: the estimator checks, pipelines, searches, and the fitted attributes."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_breast_cancer, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import backprop as bp  # noqa: E402
from backprop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits on purpose

SMALL = {"hidden_layer_sizes": (16,), "max_epochs": 50, "random_state": 0, "learning_rate": 0.01}
NOT_EQUIVALENT = ("with shuffled mini-batch gradient descent a sample weight of 2 is not the same as "
                  "repeating the sample; scikit-learn's own MLP fails this check for the same reason")


@parametrize_with_checks([MLPClassifier(**SMALL), MLPRegressor(**SMALL)], expected_failed_checks=lambda est: {
    "check_sample_weight_equivalence_on_dense_data": NOT_EQUIVALENT})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_issue_example_and_attributes():
    x, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), activation="relu", optimizer="adam", learning_rate=1e-3,
                        batch_size=32, max_epochs=200, alpha=1e-4, dropout=0.0, early_stopping=True,
                        validation_fraction=0.1, n_iter_no_change=10, random_state=0, verbose=0)
    pipeline = make_pipeline(StandardScaler(), clf).fit(x, labels)
    assert set(pipeline.predict(x)) <= {"benign", "malignant"}
    assert pipeline.score(x, labels) > 0.95
    fitted = pipeline[-1]
    assert list(fitted.classes_) == ["benign", "malignant"] and fitted.n_features_in_ == 30
    assert len(fitted.loss_curve_) == fitted.n_iter_ == len(fitted.validation_scores_)
    assert isinstance(fitted.model_, bp.Sequential) and np.isfinite(fitted.best_loss_)
    assert np.allclose(pipeline.predict_proba(x).sum(axis=1), 1)


def test_not_fitted_and_partial_fit():
    x, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:100], y[:100], classes=[0, 1])
    clf.partial_fit(x[100:], y[100:])
    assert clf.n_iter_ == 2


def test_multilabel_multioutput_and_warm_start():
    x, y = make_multilabel_classification(n_samples=120, n_classes=3, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_epochs=100, learning_rate=0.01, random_state=0).fit(x, y)
    assert clf.predict(x).shape == (120, 3) and clf.predict_proba(x).shape == (120, 3)
    x, y = make_regression(n_samples=100, n_features=4, n_targets=2, noise=0.1, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_epochs=200, learning_rate=0.01, random_state=0).fit(x, y)
    assert reg.predict(x).shape == (100, 2) and reg.score(x, y) > 0.9
    warm = MLPRegressor(hidden_layer_sizes=(8,), max_epochs=3, warm_start=True, random_state=0, n_iter_no_change=100)
    warm.fit(x, y)
    warm.fit(x, y)
    assert warm.n_iter_ == 6


@pytest.mark.slow
def test_grid_search_in_parallel_and_cross_validation():
    x, y = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_epochs=20, random_state=0))
    search = GridSearchCV(pipeline, {"mlpclassifier__hidden_layer_sizes": [(8,), (16,)]}, cv=2, n_jobs=2)
    search.fit(x, y)
    assert search.best_score_ > 0.9
    assert cross_val_score(pipeline, x, y, cv=3).mean() > 0.9


def test_pickle_round_trip():
    x, y = load_breast_cancer(return_X_y=True)
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_epochs=5, random_state=0)).fit(x, y)
    clone = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(clone.predict_proba(x), clf.predict_proba(x))


# --- scikit-learn's own parameter names (issue #31) ------------------------------------------------------------
def test_scikit_learns_names_are_accepted():
    """An MLPClassifier written for sklearn.neural_network runs: max_iter, learning_rate_init, solver, its
    'constant' learning_rate, hidden_layer_sizes as a tuple, a list or an int."""
    import warnings as warnings_module
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    for sizes in ((16,), [16, 8], 16):
        ours = MLPClassifier(hidden_layer_sizes=sizes, max_iter=30, learning_rate_init=0.01, solver="adam",
                             learning_rate="constant", random_state=0)
        with warnings_module.catch_warnings():
            warnings_module.simplefilter("ignore")
            ours.fit(x, y)
        assert ours.n_iter_ <= 30 and ours.score(x, y) > 0.95
    assert MLPClassifier(max_iter=5, learning_rate_init=0.5).get_params()["max_iter"] == 5
    for bad, message in (({"solver": "lbfgs"}, "solver='lbfgs' is not supported"),
                         ({"learning_rate": "adaptive"}, "only scikit-learn's 'constant' schedule")):
        with pytest.raises(ValueError, match=message):
            MLPClassifier(max_iter=2, **bad).fit(x, y)


def test_the_epoch_limit_gives_scikit_learns_convergence_warning():
    from sklearn.exceptions import ConvergenceWarning
    x, y = make_regression(n_samples=60, n_features=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached") as caught:
        MLPRegressor(max_iter=3, random_state=0).fit(x, y)
    assert caught[0].filename == __file__
    import warnings as warnings_module
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error")  # stopped by its own rule: no ConvergenceWarning
        converged = MLPRegressor(max_iter=500, tol=10.0, n_iter_no_change=1, random_state=0).fit(x, y)
    assert converged.n_iter_ < 500
