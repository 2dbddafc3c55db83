"""The jobs as plain functions. Each takes what it needs as arguments; no queue here."""
