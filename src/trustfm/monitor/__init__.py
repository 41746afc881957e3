"""Monitoring in production: the serving log read in windows against the run's reference profile, alerts, and
feedback-driven re-audits and adjustments."""
