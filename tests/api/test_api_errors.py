"""What the API refuses, and how: unknown job or task 404, bad options 400 with a message,
a body over 64 KiB 413, a job PROXYOS_JOBS disables 409; any body, JSON or not, gets a
success or a 4xx with a message, never a 500, and the server keeps serving."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .toolkit import ApiServer, add_api_key


@pytest.fixture(scope="module")
def admin(shared) -> str:
    server, engine, env = shared
    return add_api_key(engine, env["PROXYOS_SECRET"], ["admin"])[1]


@pytest.mark.parametrize("job", ["nope", "health-batch", "health-dispatch", "HEALTH", "x" * 300])
def test_an_unknown_or_internal_job_is_404(shared, admin, job):
    answer = shared[0].call("POST", f"/v1/jobs/{job}", admin)
    assert answer.status == 404 and "no job named" in answer.body["error"] and "health" in answer.body["error"]


def test_an_unknown_task_or_path_is_404_and_a_wrong_method_405(shared, admin):
    server = shared[0]
    assert server.call("GET", "/v1/runs/0b0b0b0b-0000-0000-0000-000000000000", admin).status == 404
    assert server.call("GET", "/v1/runs/" + "a" * 100, admin).status == 404
    nothing = server.call("GET", "/v1/nothing", admin)
    assert nothing.status == 404 and nothing.body == {"error": "Not Found"}
    wrong = server.call("GET", "/v1/jobs/health", admin)
    assert wrong.status == 405 and "POST" in wrong.headers["Allow"] and "error" in wrong.body


@pytest.mark.parametrize("data, message", [
    (b"{", "JSON object"),
    (b"[]", "not a JSON list"),
    (b'"route"', "not a JSON str"),
    (b"\xff\xfe", "JSON object"),
    (b'{"route": 1}', "must be a string"),
    (b'{"route": ""}', "must be a string"),
    (b'{"route": ["a"]}', "must be a string"),
    (b'{"route": "a\\u0000b"}', "printable"),
    (json.dumps({"route": "r" * 254}).encode(), "1 to 253"),
    (b'{"routes": "a"}', "takes no option 'routes' (it takes: route, stream)"),
    (b'{"on_demand": true}', "takes no option 'on_demand'"),
    (b'{"requested_at": 1}', "takes no option"),
    (b"[" * 5000 + b"]" * 5000, "JSON"),
])
def test_bad_options_are_400_with_a_message(shared, admin, data, message):
    answer = shared[0].call("POST", "/v1/jobs/health", admin, data=data)
    assert answer.status == 400, answer.body
    assert message in answer.body["error"]


def test_an_option_of_another_job_is_400(shared, admin):
    answer = shared[0].call("POST", "/v1/jobs/backup", admin, {"route": "r1"})
    assert answer.status == 400 and "backup takes no option 'route' (it takes: no options)" in answer.body["error"]


@pytest.mark.parametrize("header", ["", "x" * 256, "caf\u00e9"])
def test_a_bad_idempotency_key_is_400(shared, admin, header):
    answer = shared[0].call("POST", "/v1/jobs/backup", admin,
                            headers={"Idempotency-Key": header.encode("utf-8").decode("latin-1")})
    assert answer.status == 400 and "Idempotency-Key" in answer.body["error"]


def test_a_body_over_64_kib_is_413(shared, admin):
    server = shared[0]
    big = json.dumps({"route": "x" * (64 * 1024)}).encode()
    answer = server.call("POST", "/v1/jobs/health", admin, data=big)
    assert answer.status == 413 and "64 KiB" in answer.body["error"]
    chunked = server.call("POST", "/v1/jobs/health", admin, data=iter([b" " * 40_000, b" " * 40_000]))
    assert chunked.status == 413
    fits = json.dumps({"route": "r1"}).encode() + b" " * (64 * 1024 - 20)
    assert server.call("POST", "/v1/jobs/health", admin, data=fits).status == 202


def test_a_job_disabled_by_proxyos_jobs_is_409(sqlite_api_env, tmp_path):
    env = dict(sqlite_api_env, PROXYOS_JOBS="all,-backup")
    server = ApiServer(env, tmp_path / "serve.log")
    try:
        from db.engine import create_engine

        engine = create_engine(env["PROXYOS_DATABASE_URL"])
        _, key = add_api_key(engine, env["PROXYOS_SECRET"], ["admin"])
        engine.dispose()
        answer = server.call("POST", "/v1/jobs/backup", key)
        assert answer.status == 409 and "PROXYOS_JOBS" in answer.body["error"]
        assert server.call("POST", "/v1/jobs/prune", key).status == 202
    finally:
        assert server.stop() == 0, server.log()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
OPTIONS = st.dictionaries(st.sampled_from(["route", "stream", "cert", "domain"]) | st.text(max_size=12),
                          JSON, max_size=3)
BODIES = (st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode())
          | OPTIONS.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=st.sampled_from(["health", "issue", "backup", "certs", "nope"]), body=BODIES)
def test_any_body_gets_an_answer_never_a_500(shared, admin, job, body):
    answer = shared[0].call("POST", f"/v1/jobs/{job}", admin, data=body)
    assert answer.status == 202 or 400 <= answer.status < 500, (answer.status, answer.body)
    if answer.status != 202:
        assert isinstance(answer.body, dict) and answer.body["error"]


def test_the_server_keeps_serving_after_bad_bodies(shared, admin):
    server = shared[0]
    for data in (b"\x00" * 100, b"{" * 10_000, b'{"route": "\\ud800"}', b"null"):
        assert 400 <= server.call("POST", "/v1/jobs/health", admin, data=data).status < 500
    assert server.call("GET", "/healthz").status == 200
    assert "Traceback" not in server.log()
