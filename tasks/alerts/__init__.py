"""Alerts: the workers' rules in ProxyOS's `alert_rules` (health and certificates),
turned into `alert_events` rows and notifications in an outbox (one transaction), which
`notify` delivers to ProxyOS's webhook and SMTP settings with retries. See docs/alerts.md."""
