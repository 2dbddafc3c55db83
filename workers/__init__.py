"""The Huey app, the periodic scheduler, the consumer and the `proxyos-worker` CLI."""
