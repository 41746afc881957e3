"""Report stage: render audit results (never recompute them) as HTML and JSON."""

from trustfm.report.build import build_report, collect_report

__all__ = ["build_report", "collect_report"]
