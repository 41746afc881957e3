"""Registry of audits: new audits plug in here instead of editing a dispatcher.

An audit registers a name, a one-line description and the function that runs
it on a run folder. ``trustfm audit`` and the report list what is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class AuditSpec:
    name: str
    description: str
    run: Callable  # (run_dir: Path, **options) -> pydantic result, written by the caller


_AUDITS: dict[str, AuditSpec] = {}


def register_audit(name: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_audit("performance", "...")`` on the audit's run function."""

    def wrap(func: Callable) -> Callable:
        if name in _AUDITS and _AUDITS[name].run is not func:
            raise ValueError(f"audit '{name}' is already registered")
        _AUDITS[name] = AuditSpec(name, description, func)
        return func

    return wrap


def registered_audits() -> dict[str, AuditSpec]:
    """All registered audits by name (importing trustfm.audit registers the built-in ones)."""
    return dict(_AUDITS)
