"""``trustfm tune``: hyper-parameter search on Optuna; every trial is a run folder, the chosen one the output run."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


@app.command()
def tune(
    config: Path = typer.Argument(..., help="run config YAML with a tune: block (tune.space: the keys to search)"),
    trials: Optional[int] = typer.Option(None, help="trials in the study, killed ones retried [tune.trials]"),
    sampler: Optional[str] = typer.Option(None, help="tpe | random | grid | nsga2 [tune.sampler]"),
    pruner: Optional[str] = typer.Option(None, help="median | hyperband | none [tune.pruner]"),
    select: Optional[str] = typer.Option(
        None, "--select", help="rule that makes one trial the output run OUTPUT_DIR/selected: 'best', or e.g. "
                               "'max validation.macro_f1 where fairness.max_fpr_gap <= 0.1' [tune.select]"),
    resume: bool = typer.Option(False, "--resume", help="continue the study in output_dir after a kill, or join it "
                                                        "from a second process"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="study folder [output_dir]"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key: --set tune.startup_trials=3"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no live table of trials"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Search hyper-parameters under audit constraints; pick a trial by a rule; the result is a normal run folder."""
    from trustfm.cli._config_options import overrides_from_flags
    from trustfm.config import load_config
    from trustfm.pipeline import tune_and_select

    import sys

    cfg = load_config(config, overrides_from_flags(dict(locals()), set_))
    live = None if quiet or output_format is OutputFormat.json or not sys.stderr.isatty() else _live_table(cfg)
    if live is None:
        # no terminal to redraw a table on (a file or a pipe): one line per finished trial instead
        result = tune_and_select(cfg, resume=resume, show_progress=False,
                                 on_trial=None if quiet else _trial_line)
    else:
        with live, _quiet_stage_logs():
            result = tune_and_select(cfg, resume=resume, show_progress=False,
                                     on_trial=lambda record, study: live.update(trials_table(study)))
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    print_rich(trials_table(result))
    _print_outcome(result)


def _trial_line(record, study) -> None:
    """One line per finished trial: state, objective values, constraints, seconds (stderr)."""
    values = ", ".join(f"{o['metric']} {v:.4f}" for o, v in zip(study.objectives, record.values or []))
    met = "" if record.feasible is None else (", constraints met" if record.feasible else ", constraints violated")
    typer.echo(f"trial {record.number}: {record.state}{': ' + values if values else ''}{met}"
               f" ({record.seconds or 0:.0f} s)", err=True)


def _live_table(cfg):
    """The trials table, redrawn after each trial (a terminal only; it is printed once at the end anyway)."""
    from rich.console import Console
    from rich.live import Live

    return Live(table(f"tune — {cfg.output_dir}: first trial running", ["trial"]), refresh_per_second=2,
                transient=True, console=Console(stderr=True))


@contextmanager
def _quiet_stage_logs():
    """Each trial's data and evaluation notes would scroll the live table away: warnings only meanwhile."""
    logger = logging.getLogger("trustfm")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def trials_table(result):
    """Trials as rows: state, objective values, constraints met, epoch pruned at, seconds, parameters."""
    objectives = [o["metric"] for o in result.objectives]
    done = result.counts.get("complete", 0) + result.counts.get("pruned", 0) + result.counts.get("fail", 0)
    out = table(f"tune {result.study_name}: {done} of {result.trials_planned:g} trials ({result.sampler}, pruner "
                f"{result.pruner})", ["trial", "state", *objectives, "constraints", "pruned at", "s", "parameters"])
    for t in result.trials:
        values = [f"{v:.4f}" for v in t.values] if t.values else ["—"] * len(objectives)
        met = "—" if t.feasible is None else ("met" if t.feasible else "violated")
        mark = "★ " if t.number in result.front else ""
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                           for k, v in t.params.items())
        out.add_row(f"{mark}{t.number}", t.state, *values, met, str(t.pruned_at_epoch or "—"),
                    f"{t.seconds:.0f}" if t.seconds else "—", params)
    return out


def _print_outcome(result) -> None:
    from rich.text import Text

    lines = [f"study: {result.study_dir}/tune.json (journal {result.journal})"]
    lines += [f"trial {t.number}: {note}" for t in result.trials for note in t.notes]
    if result.importances:
        for metric, shares in result.importances.items():
            lines.append(f"importance for {metric}: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
    if result.privacy:
        p = result.privacy
        lines.append(f"privacy: the whole search costs epsilon {p['epsilon']:.3g} at delta {p['delta']:.0e} "
                     f"({p['expected_trials']:.3g} trials expected; one trial up to {p['trial_epsilon']:.3g}), "
                     "charged to the privacy ledger")
    if result.chosen:
        lines.append(f"chosen: trial {result.chosen.trial} by '{result.chosen.rule}' -> {result.chosen.run_dir} "
                     "(evaluated on the test split; audit, report and gate it like any run)")
    else:
        lines.append("no output run yet: choose one with --resume --select 'best' (or a rule)")
    print_rich(Text("\n".join(lines)))
