"""The workers' cumulative totals for `GET /metrics`: `traffic_route_totals` (requests,
errors, bytes per route), `task_run_totals` (finished runs per job and status, with a
duration histogram) and `health_check_totals` (checks per route or stream and result).
Retention deletes the rows the totals could otherwise be summed from (1m buckets,
access_log, task_runs, health history); these tables are only ever added to, so the
counters read from them never fall.

Seeds, in the migration's transaction:
- `traffic_route_totals`: what the workers have counted so far. Each of the 1d and 1h
  rollups and the workers' own 1m rows (id `1m-...`) holds every counted request of the
  time it still covers, so each sum is a lower bound of the truth, and the largest is
  taken, per route and column. It is exact when the longest-kept bucket size was never
  pruned (the default: 1d rollups are kept forever). ProxyOS's own 1m rows (other ids)
  were never counted by the workers and are not in it.
- `task_run_totals`: the finished runs still in `task_runs` (the last 30 days by
  default); older runs were pruned and are not known any more.
- `health_check_totals`: starts empty (the history is cut to 100 rows a route).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from migrations.additive import ensure_table

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BOUNDS_MS = (10, 100, 1_000, 10_000, 60_000, 300_000, 1_800_000)


def upgrade() -> None:
    ensure_table(
        "traffic_route_totals",
        """
        route_id text PK
        requests integer NN =0
        errors integer NN =0
        bytes integer NN =0
        """,
    )
    buckets = "\n".join(f"le_{bound} integer NN =0" for bound in BOUNDS_MS)
    ensure_table(
        "task_run_totals",
        f"""
        job text PK
        status text PK
        runs integer NN =0
        timed integer NN =0
        duration_ms_sum integer NN =0
        {buckets}
        last_finished_at real
        """,
    )
    ensure_table(
        "health_check_totals",
        """
        target_type text PK
        target_id text PK
        result text PK
        checks integer NN =0
        timed integer NN =0
        duration_ms_sum integer NN =0
        """,
    )
    sums = "sum(requests) AS r, sum(errors) AS e, sum(bytes) AS b"
    op.execute(sa.text(f"""
        INSERT INTO traffic_route_totals (route_id, requests, errors, bytes)
        SELECT route_id, max(r), max(e), max(b) FROM (
            SELECT route_id, {sums} FROM traffic_rollups WHERE bucket = '1d' GROUP BY route_id
            UNION ALL
            SELECT route_id, {sums} FROM traffic_rollups WHERE bucket = '1h' GROUP BY route_id
            UNION ALL
            SELECT route_id, {sums} FROM traffic_metrics WHERE bucket = '1m' AND id LIKE '1m-%'
            GROUP BY route_id
        ) AS counted
        WHERE true
        GROUP BY route_id
        ON CONFLICT (route_id) DO NOTHING
    """))
    columns = ", ".join(f"le_{bound}" for bound in BOUNDS_MS)
    counts = ", ".join(f"sum(CASE WHEN duration_ms <= {bound} THEN 1 ELSE 0 END)" for bound in BOUNDS_MS)
    op.execute(sa.text(f"""
        INSERT INTO task_run_totals (job, status, runs, timed, duration_ms_sum, {columns}, last_finished_at)
        SELECT job, status, count(*), count(duration_ms), coalesce(sum(duration_ms), 0), {counts},
               max(finished_at)
        FROM task_runs WHERE status <> 'running'
        GROUP BY job, status
        ON CONFLICT (job, status) DO NOTHING
    """))


def downgrade() -> None:
    raise NotImplementedError("migrations are additive only; restore a backup instead")
