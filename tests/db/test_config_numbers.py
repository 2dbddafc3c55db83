"""Configuration numbers: a value in range, or one ConfigError naming the variable;
never inf, nan, a silent overflow or another exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import config
from workers.config import ConfigError, env_float, env_int
from workers.settings.certs import load as cert_settings
from workers.settings.retention import load as retention_settings
from workers.settings.traffic import load as traffic_settings

NOT_NUMBERS = ["inf", "-inf", "Infinity", "nan", "NaN", "1e308", "1e999", "9" * 5000, "", "  ", "0x10", "five"]


@pytest.mark.parametrize("raw", NOT_NUMBERS)
def test_a_float_setting_is_finite_and_within_its_range(raw):
    env = {"X_SECONDS": raw}
    try:
        value = env_float(env, "X_SECONDS", 1.0, minimum=0.5, maximum=3600)
    except ConfigError as exc:
        assert exc.variable == "X_SECONDS" and "from 0.5 to 3600" in str(exc)
    else:
        assert raw.strip() == "" and value == 1.0


@pytest.mark.parametrize("raw", [*NOT_NUMBERS, "2147483648", "-1", "10001"])
def test_an_int_setting_is_within_its_range(raw):
    try:
        value = env_int({"X_COUNT": raw}, "X_COUNT", 7, minimum=0, maximum=10_000)
    except ConfigError as exc:
        assert exc.variable == "X_COUNT" and "from 0 to 10000" in str(exc)
    else:
        assert raw.strip() == "" and value == 7


def test_the_bounds_are_inclusive():
    assert env_int({"N": "10"}, "N", 1, minimum=1, maximum=10) == 10
    assert env_float({"F": "0.5"}, "F", 1.0, minimum=0.5, maximum=2) == 0.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROXYOS_BUSY_TIMEOUT_MS", "2147483648"),  # SQLite would silently make it 0
        ("PROXYOS_SHUTDOWN_TIMEOUT", "inf"),
        ("PROXYOS_SHUTDOWN_TIMEOUT", "1e308"),
        ("PROXYOS_QUEUE_POLL", "nan"),
        ("PROXYOS_QUEUE_POLL", "3600"),
        ("PROXYOS_BACKUP_KEEP", "1e9"),
        ("PROXYOS_BACKUP_KEEP", "99999999999999999999"),
    ],
)
def test_core_settings_have_a_sane_range(variable, value):
    with pytest.raises(ConfigError) as refused:
        config.load({variable: value})
    assert refused.value.variable == variable


@pytest.mark.parametrize(
    ("load", "variable", "value"),
    [
        (retention_settings, "PROXYOS_RETENTION_ACCESS_LOG_DAYS", "inf"),
        (retention_settings, "PROXYOS_RETENTION_METRICS_1H_DAYS", "1e308"),
        (retention_settings, "PROXYOS_PRUNE_PAUSE_MS", "1e308"),
        (traffic_settings, "PROXYOS_TRAFFIC_INGEST_BATCH", "99999999999"),
        (cert_settings, "PROXYOS_DNS_NAMESERVER_PORT", "70000"),
        (cert_settings, "PROXYOS_DNS_PROPAGATION_TIMEOUT", "inf"),
        (cert_settings, "PROXYOS_CERT_LEASE_SECONDS", "1e308"),
    ],
)
def test_job_settings_have_a_sane_range(load, variable, value):
    with pytest.raises(ConfigError) as refused:
        load({variable: value})
    assert refused.value.variable == variable


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=st.one_of(st.text(max_size=30), st.floats().map(repr), st.integers().map(str)),
       bounds=st.tuples(st.integers(-10, 10), st.integers(0, 10**6)))
def test_any_text_is_a_number_in_range_or_a_config_error(raw, bounds):
    low, span = bounds
    env = {"SOME_VARIABLE": raw}
    for read in (env_int, env_float):
        try:
            value = read(env, "SOME_VARIABLE", low, minimum=low, maximum=low + span)
        except ConfigError as exc:
            assert exc.variable == "SOME_VARIABLE" and "SOME_VARIABLE" in str(exc)
            assert "\n" not in str(exc)
        else:
            assert math.isfinite(value) and low <= value <= low + span
