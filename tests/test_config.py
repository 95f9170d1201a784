"""Settings: defaults in one place, overrides checked, the environment read only on request."""

from __future__ import annotations

import dataclasses

import pytest

from mlserver.config import Settings, read_options, settings_options
from mlserver.errors import ConfigurationError


def test_defaults_are_sane():
    """The default lease is at most 30 s and heartbeats come well inside it."""
    settings = Settings()
    assert settings.lease_seconds <= 30
    assert settings.heartbeat_seconds * 2 < settings.lease_seconds
    assert settings.max_body_bytes >= 1024 * 1024


def test_from_env_reads_prefixed_variables():
    """MLSERVER_<NAME> variables override defaults with the field's type."""
    settings = Settings.from_env(
        {"MLSERVER_MAX_BODY_BYTES": "1000", "MLSERVER_LEASE_SECONDS": "12.5"}
    )
    assert settings.max_body_bytes == 1000 and isinstance(settings.max_body_bytes, int)
    assert settings.lease_seconds == 12.5
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"MLSERVER_REFUSE_VERSION_SKEW": "true"}).refuse_version_skew


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"MLSERVER_MAX_BODY_BYTES": "lots"}, "MLSERVER_MAX_BODY_BYTES"),
        ({"MLSERVER_REFUSE_VERSION_SKEW": "perhaps"}, "MLSERVER_REFUSE_VERSION_SKEW"),
        ({"MLSERVER_TRAINING_THREADS": "0"}, "training_threads"),
        ({"MLSERVER_HEARTBEAT_SECONDS": "60"}, "heartbeat_seconds"),
    ],
)
def test_bad_values_are_configuration_errors(environ, needle):
    """A non-number, a non-positive value or a heartbeat longer than the lease is refused."""
    with pytest.raises(ConfigurationError, match=needle):
        Settings.from_env(environ)


def test_replace_rejects_unknown_names():
    """Overriding a setting that does not exist names it instead of being ignored."""
    assert Settings().replace(model_cache_size=3).model_cache_size == 3
    with pytest.raises(ConfigurationError, match="cache_sise"):
        Settings().replace(cache_sise=3)


def test_empty_variables_count_as_unset():
    """An empty MLSERVER_ variable leaves its default, as compose's `${VAR:-}` means it."""
    assert Settings.from_env({"MLSERVER_MAX_BODY_BYTES": "", "MLSERVER_MAX_ROWS": "7"}) == (
        Settings(max_rows=7)
    )


def test_a_given_value_wins_over_its_variable_and_the_variable_over_the_default():
    """One rule for every option: the flag's value, else the variable, else the default."""
    environ = {"MLSERVER_MAX_ROWS": "7", "MLSERVER_MAX_COLUMNS": "9"}
    values = read_options(settings_options(), {"max_rows": 5}, environ)
    assert Settings(**values) == Settings(max_rows=5, max_columns=9)
    flags = [option.flag for option in settings_options()]
    variables = [option.env for option in settings_options()]
    assert "--max-rows" in flags and "MLSERVER_MAX_ROWS" in variables
    assert len(flags) == len(dataclasses.fields(Settings))
