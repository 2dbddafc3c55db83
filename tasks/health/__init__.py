"""Health checks of routes (HTTP(S) or TCP, every upstream) and streams (TCP, UDP).

Modules, one idea each:
- `settings`: the knobs (timeout, thresholds, intervals, concurrency).
- `config`: a route or stream row -> a check, or a `config:` error.
- `body_regex`: the body regex, in RE2 (linear time), searched off the probing loop.
- `probe_http`, `probe_socket`: probe one upstream; `verdict`: combine them.
- `state`: the flap-free state machine (pure), and whether a transition is pending.
- `store`: reading rows and writing results, state and events in short transactions.
- `schedule`: due times with a deterministic per-id phase; the dispatcher's claim; when
  a pending target is re-checked (fast re-checks).
- `batch`: probe a batch concurrently, writing as results come in; `writer`: the batching.
- `loop`: the one event loop per process that all batches probe on.
- `status`: the summary `proxyos-worker status` shows.
"""
