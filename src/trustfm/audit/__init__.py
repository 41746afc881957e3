"""Audit stage: functions over model outputs that return typed result objects."""

from trustfm.audit.performance import PerformanceResult, evaluate_predictions, quick_metrics
from trustfm.audit.registry import register_audit, registered_audits

__all__ = [
    "PerformanceResult",
    "evaluate_predictions",
    "quick_metrics",
    "register_audit",
    "registered_audits",
]
