"""The test toolkit: what the tests share, imported as `tests.toolkit.<module>`.

- `factories`: rows as ProxyOS writes them, one function a kind (`add_route`,
  `add_stream`, `add_provider`, `add_certificate`, `add_plaintext_account_key`), each
  with keyword defaults named after the table's columns; `ups`, `unique`, `SECRET`.
- `processes`: `run_cli` and `Consumer` (the worker as a user runs it), `wait_until`,
  `free_port`, and what the servers share to start and stop a process.
- `jobs`: a job context in this process and the runs it records.
- `snapshots`: a database's schema and rows, what a query trick could change, file modes.
- `caddy_log`: Caddy access-log lines.
- `traffic`: the traffic tables recounted from the raw data.
- `certs`: the certificate settings and environment that point the workers at BIND and Pebble.
- `servers`: one module a server, each with `start_<server>(...)` returning an object
  that `stop()`s it (HTTP upstreams, BIND 9, Pebble, PowerDNS, Caddy, PostgreSQL, Redis,
  the DNS providers' HTTP APIs).

Fixtures that start these servers stay in the `conftest.py` of the tests that use them.
"""
