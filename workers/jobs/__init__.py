"""One module per area; each exports `JOBS`. See `workers.registry`."""
