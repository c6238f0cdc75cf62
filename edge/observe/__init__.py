"""Observability: JSON logs, Prometheus metrics."""
