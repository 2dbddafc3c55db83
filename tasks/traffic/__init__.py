"""Traffic: ingest Caddy's access log into `access_log`, aggregate it exactly once into
`traffic_metrics` buckets (1m, 1h, 1d) with latency histograms, and the retention rules
of those tables (`retention`, applied by `tasks.retention.prune`). No Huey or workers
import here: the jobs in `workers/jobs/traffic.py` are thin adapters."""
