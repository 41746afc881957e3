"""Audit stage: functions over model outputs that return typed result objects."""

from trustfm.audit.performance.evaluation import PerformanceResult, evaluate_predictions
from trustfm.audit.registry import load_builtin_audits, register_audit, registered_audits

__all__ = [
    "PerformanceResult",
    "evaluate_predictions",
    "load_builtin_audits",
    "register_audit",
    "registered_audits",
]
