"""Observability: stats now; metrics, alerts and reports as they land."""
