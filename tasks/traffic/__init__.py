"""Traffic: ingest Caddy's access log into `access_log`, aggregate it exactly once into
`traffic_metrics` buckets (1m, 1h, 1d) with latency histograms, and prune by the
retention rules. No Huey or workers import here: the jobs in `workers/jobs/traffic.py`
are thin adapters."""
