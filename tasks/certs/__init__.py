"""Certificates through ACME DNS-01: accounts, orders, DNS providers, propagation checks,
renewal policy and row leases. Plain functions; the workers' jobs are thin adapters."""
