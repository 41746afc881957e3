"""Rich progress bars on stderr for loops that run longer than a few seconds."""

from __future__ import annotations


def progress_bar(enabled: bool, *, with_loss: bool = False):
    """A Rich ``Progress``; ``with_loss`` adds a column for a ``loss`` task field."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if with_loss:
        columns.append(TextColumn("loss {task.fields[loss]}"))  # a preformatted string: "–" before the first step
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=False)
