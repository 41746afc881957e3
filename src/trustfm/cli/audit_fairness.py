"""``trustfm audit fairness``: group, counterfactual and probe-set fairness of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich


@audit_app.command("fairness")
def fairness(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    sensitive: Optional[str] = typer.Option(None, "--sensitive", help="sensitive column(s), comma-separated"),
    probe: Optional[str] = typer.Option(None, "--probe", help="hatecheck | jigsaw-templates | eec-style | PATH"),
    probe_data: Optional[Path] = typer.Option(
        None, "--probe-data",
        help="folder of the probe's files (default: $TRUSTFM_DATA_DIR/<probe>, else shared/data/<probe> beside the "
             "trustfm checkout; never relative to the working directory)"),
    probe_positive: Optional[str] = typer.Option(None, "--probe-positive", help="positive label of a probe file"),
    positive_label: Optional[str] = typer.Option(None, "--positive-label", help="model class(es) counted as positive, comma-separated [fairness.positive_label]"),
    postprocess: Optional[str] = typer.Option(None, "--postprocess", help="threshold_optimizer: fit group thresholds on validation"),
    constraint: str = typer.Option("demographic_parity", "--constraint", help="demographic_parity | equalized_odds | ..."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="baseline run folder: before/after table"),
    assume_task: Optional[str] = typer.Option(None, "--assume-task", help="the run's task for a probe's label "
                                              "check (sentiment, hate_speech, toxicity), where training did not declare it"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Per-group metrics with 95% intervals, disparities, counterfactual flips and mitigation comparisons."""
    from trustfm.audit.fairness.plugin import audit_fairness_run
    from trustfm.errors import ConfigError

    if postprocess not in (None, "threshold_optimizer"):
        raise ConfigError(f"--postprocess: unknown method '{postprocess}' (threshold_optimizer)")
    columns = [c.strip() for c in sensitive.split(",") if c.strip()] if sensitive else []
    results = audit_fairness_run(
        run_dir, sensitive=columns, probe=probe, probe_data=probe_data, probe_positive=probe_positive,
        positive_label=positive_label, postprocess=postprocess, constraint=constraint, compare=compare,
        assume_task=assume_task, show_progress=True,
    )
    if output_format is OutputFormat.json:
        emit_json({name: result.model_dump(mode="json") for name, result in results.items()})
        return
    for name, result in results.items():
        print_rich(_table(name, result))


def _fmt(iv) -> str:
    return fmt_interval(iv, digits=3)


def _table(name: str, result):
    from rich.table import Table

    from trustfm.audit.fairness.comparison import MitigationComparison
    from trustfm.audit.fairness.counterfactual import CounterfactualResult
    from trustfm.audit.fairness.group import FairnessResult
    from trustfm.audit.fairness.representation import RepresentationResult

    if isinstance(result, FairnessResult):
        framing = (f"positive = {result.positive_label}" if result.positive_label is not None else
                   f"one-vs-rest over {len(result.label_names)} classes (gaps: the worst class)")
        table = Table(title=f"{name}: {result.dataset}, {framing}")
        rates = ("selection_rate", "tpr", "fpr") if result.positive_label is not None else ()
        for column in ("slice", "group", "n", "accuracy", *(r.replace("_", " ") for r in rates)):
            table.add_column(column)
        for sl in result.slices:
            for g in sl.groups:
                m = g.metrics
                table.add_row(sl.name, g.group + (" (small: not in the gaps)" if g.too_small else ""), str(g.n),
                              _fmt(m["accuracy"]), *(_fmt(m[r]) for r in rates))
            d = sl.disparities
            table.add_row(sl.name, "[b]DP diff / EO diff[/]", "", _fmt(d["demographic_parity_difference"]),
                          _fmt(d["equalized_odds_difference"]), *([""] * max(0, len(rates) - 1)),
                          end_section=True)
        return table
    if isinstance(result, CounterfactualResult):
        table = Table(title=f"{name}: identity-term substitution on {result.dataset}")
        for column in ("axis", "texts", "pairs", "flip rate", "mean |Δp|"):
            table.add_column(column)
        for axis in result.axes:
            table.add_row(axis.axis, str(axis.texts), str(axis.pairs), _fmt(axis.flip_rate), _fmt(axis.mean_abs_change))
        for axis, why in result.skipped_axes.items():
            table.add_row(axis, "0", "0", f"skipped: {why}", "")
        return table
    if isinstance(result, RepresentationResult):
        table = Table(title=f"{name}: {result.dataset}")
        for column in ("column", "group", "n", "share", "flags"):
            table.add_column(column)
        for column, groups in result.columns.items():
            for g in groups:
                table.add_row(column, g.group, str(g.n), f"{g.share:.1%}", "; ".join(g.flags))
        return table
    if isinstance(result, MitigationComparison):
        table = Table(title=f"{name}: {result.name}")
        for column in ("slice", "metric", "before", "after", "change"):
            table.add_column(column)
        if result.accuracy_before is not None:
            table.add_row("overall", "accuracy", _fmt(result.accuracy_before), _fmt(result.accuracy_after),
                          f"{result.accuracy_change:+.3f}")
        for row in result.rows:
            table.add_row(row.slice, row.metric, _fmt(row.before), _fmt(row.after), f"{row.change:+.3f}")
        return table
    return Table(title=name)
