"""Retention: how long rows are kept. Each area declares the rules for its own tables
(`tasks.traffic.retention`, `tasks.health.retention`, `run_history`); `prune` applies
any list of them in short batches that never hold up the dashboard's writes."""
