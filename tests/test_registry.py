"""Registry and wrappers: names are checked, defaults follow scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, SGDRegressor

from mlserver import ModelWrapper, Registry, wrap_estimator
from mlserver.errors import ConfigurationError, ModelNotFound
from mlserver.registry import RESERVED_NAMES
from mlserver.serializers import JoblibSerializer


class Plain(ModelWrapper):
    name = "plain"

    def make_model(self, **modkwargs):
        return LinearRegression(**modkwargs)


def test_register_instances_and_classes():
    """Both a wrapper class and an instance can be registered and looked up by name."""
    registry = Registry([Plain])
    other = registry.register(wrap_estimator(SGDRegressor, "sgd"))
    assert registry.get("sgd") is other
    assert isinstance(registry.get("plain"), Plain)
    assert registry.names() == ["plain", "sgd"] and len(registry) == 2 and "sgd" in registry


@pytest.mark.parametrize("name", [*sorted(RESERVED_NAMES), "", "a/b", "with space", "é", "-x", 5])
def test_bad_names_are_refused(name):
    """Reserved, empty, non-URL-safe and non-string names fail at registration."""
    with pytest.raises(ConfigurationError):
        Registry([wrap_estimator(LinearRegression, name)])


def test_duplicate_names_are_refused():
    """Two wrappers cannot share a route."""
    with pytest.raises(ConfigurationError, match="already registered"):
        Registry([Plain, Plain])


def test_unknown_model_names_the_registered_ones():
    """Looking up a missing name says which ones exist."""
    with pytest.raises(ModelNotFound, match="plain"):
        Registry([Plain]).get("nope")


def test_wrapper_without_make_model_fails_at_instantiation():
    """A wrapper missing make_model cannot be instantiated (nor registered)."""

    class Broken(ModelWrapper):
        name = "broken"

    with pytest.raises(TypeError, match="make_model"):
        Registry([Broken])


def test_unknown_serializer_fails_at_registration():
    """A serializer alias that does not exist fails at start-up, not at the first fit."""
    with pytest.raises(ConfigurationError, match="unknown serializer"):
        Registry([wrap_estimator(LinearRegression, "lin", serializer="pickle-ish")])


def test_defaults_fit_and_predict_like_sklearn():
    """The default fit/predict give exactly what the estimator itself gives."""
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(20, 2)), columns=["a", "b"])
    y = x["a"] * 2 + 1
    wrapper = Plain()
    model = wrapper.fit(wrapper.make_model(), x, y)
    np.testing.assert_allclose(wrapper.predict(model, x), LinearRegression().fit(x, y).predict(x))
    assert wrapper.metadata(model, x, y) == {}
    assert not wrapper.supports_update
    assert isinstance(wrapper.get_serializer(), JoblibSerializer)


def test_wrap_estimator_update_uses_partial_fit():
    """With update="partial_fit", update learns from new data and PATCH is supported."""
    wrapper = wrap_estimator(SGDRegressor, "sgd", update="partial_fit")
    assert wrapper.supports_update
    x = pd.DataFrame({"a": np.linspace(-1, 1, 50)})
    model = wrapper.fit(wrapper.make_model(random_state=0), x, 3 * x["a"])
    before = model.coef_.copy()
    updated = wrapper.update(model, x, -3 * x["a"])
    assert updated.coef_[0] < before[0]


def test_wrapped_estimator_describes_itself_by_public_path():
    """The description names the estimator's public import path, not a private module."""
    assert type(wrap_estimator(SGDRegressor, "sgd")).__doc__ == (
        "sklearn.linear_model.SGDRegressor served as 'sgd'."
    )


def test_wrapped_estimators_pickle():
    """A wrap_estimator wrapper survives pickling, so process pools can run its jobs."""
    import pickle

    wrapper = wrap_estimator(SGDRegressor, "sgd", update="partial_fit")
    clone = pickle.loads(pickle.dumps(wrapper))
    assert clone.name == "sgd" and clone.supports_update
    assert type(clone.make_model(alpha=0.5)) is SGDRegressor


def test_wrap_estimator_checks_parameters_up_front():
    """Unknown constructor names and ill-typed values fail in make_model, naming them."""
    wrapper = wrap_estimator(LinearRegression, "lin")
    with pytest.raises(TypeError, match="bogus"):
        wrapper.make_model(bogus=1)
    with pytest.raises(ValueError, match="fit_intercept"):
        wrapper.make_model(fit_intercept="yes")
    with pytest.raises(TypeError, match="no method"):
        wrap_estimator(LinearRegression, "lin", update="partial_fit")


def test_wrap_estimator_builds_every_estimator_that_has_defaults():
    """wrap_estimator builds every scikit-learn estimator whose arguments all have defaults,
    including those without parameter constraints (LabelEncoder, KernelCenterer); only
    defaults scikit-learn itself rejects (SelfTrainingClassifier's estimator=None) fail."""
    import inspect
    import warnings

    from sklearn.utils import all_estimators

    built = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated estimators warn when built
        for name, cls in all_estimators():
            parameters = inspect.signature(cls).parameters.values()
            if any(p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters):
                continue
            try:
                cls()._validate_params()
            except AttributeError:  # no constraints to check
                pass
            except ValueError:
                with pytest.raises(ValueError):
                    wrap_estimator(cls, name.lower()).make_model()
                continue
            model = wrap_estimator(cls, name.lower()).make_model()
            assert type(model) is cls
            built.append(name)
    assert {"LabelEncoder", "KernelCenterer", "StandardScaler"} <= set(built)
