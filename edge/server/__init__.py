"""The client-facing server: h11 protocol, routes, workers."""
