"""``trustfm monitor``: the serving log of a run's model, judged window by window, with alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


@app.command()
def monitor(
    run_dir: Path = typer.Argument(..., help="the run folder whose model is served"),
    log_url: Optional[str] = typer.Option(None, "--log", help="request-log URL (default: the run's own SQLite log, "
                                                              "RUN_DIR/serving/requests.db)"),
    window: str = typer.Option("1h", "--window", help="window size: a duration (30m, 1h, 1d) or a number of "
                                                      "answers (500)"),
    every: Optional[str] = typer.Option(None, "--every", help="keep running: judge new windows every duration "
                                                              "(10m); Ctrl-C stops"),
    alerts_file: Optional[Path] = typer.Option(None, "--alerts", help="alert rules YAML (rules, webhook)"),
    reaudit: bool = typer.Option(False, "--reaudit", help="also re-run the performance and fairness audits on "
                                                          "feedback-labelled answers"),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="serve Prometheus gauges of the "
                                                                            "latest window and alerts on this port"),
    export_rules: Optional[Path] = typer.Option(None, "--export-rules", help="write the --alerts rules (and the "
                                                "service's own) as a Prometheus rules file, then stop; with "
                                                "--every, rules over several windows become a duration"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Compare new windows of production answers with the run's reference profile; raise and resolve alerts."""
    import time

    from trustfm.monitor.alerts import AlertConfig, load_alert_config, parse_duration

    if export_rules is not None:
        _export_rules(alerts_file, export_rules, every)
        return
    from trustfm.monitor.run import MonitorGauges, NoCompleteWindow, monitor_run
    from trustfm.serve.settings import ServeSettings, default_paths

    alerts = load_alert_config(alerts_file) if alerts_file is not None else AlertConfig()
    url = log_url or default_paths(run_dir, ServeSettings())[1]
    pause = None if every is None else parse_duration(every, field="--every").total_seconds()
    gauges = None
    if metrics_port is not None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        gauges = MonitorGauges(registry)
        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    while True:
        try:
            result, new = monitor_run(run_dir, log_url=url, window=window, alerts=alerts, reaudit=reaudit,
                                      gauges=gauges)
        except NoCompleteWindow as exc:
            if pause is None:
                raise
            typer.echo(str(exc), err=True)
        else:
            if reaudit and result.reaudit is not None:
                from trustfm.report.production import build_reaudit_report

                from trustfm.serve.requestlog import RequestLog

                page = build_reaudit_report(run_dir, result.reaudit.model_dump(mode="json"),
                                            source=f"request log {RequestLog.masked(str(url))}")
            if output_format is OutputFormat.json:
                emit_json(result.model_dump(mode="json"))
            else:
                _show(result, new)
                if reaudit and result.reaudit is not None:
                    typer.echo(f"written: {page} (the re-audit, beside the training report)")
        if pause is None:
            return
        time.sleep(pause)


def _export_rules(alerts_file: Path | None, output: Path, every: str | None) -> None:
    import yaml

    from trustfm.fileio import write_text_atomic
    from trustfm.monitor.alerts import AlertConfig, load_alert_config, parse_duration
    from trustfm.monitor.prometheus import prometheus_rules

    alerts = load_alert_config(alerts_file) if alerts_file is not None else AlertConfig()
    pause = None if every is None else parse_duration(every, field="--every")
    document = prometheus_rules(alerts, every=pause)
    header = (f"# Prometheus alerting rules written by `trustfm monitor --export-rules` from "
              f"{alerts_file.name if alerts_file else 'no trustfm rules'}; check with `promtool check rules`\n")
    write_text_atomic(output, header + yaml.safe_dump(document, sort_keys=False, width=120))
    typer.echo(f"written: {output} ({sum(len(g['rules']) for g in document['groups'])} rules)")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):
        value = value["value"]
    elif hasattr(value, "value"):
        value = value.value
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _show(result, new: int) -> None:
    shown = result.windows[-max(new, 1):] if result.windows else []
    grid = table(f"{new} new window(s) of {result.window}: {len(result.windows)} judged, "
                 f"{result.processed} answers", ["window end", "n", "pred PSI", "conf KS p", "MMD p", "OOD rate",
                                                 "accuracy", "pos-rate gap"])
    for w in shown:
        grid.add_row(w.end[:19], str(w.n), _fmt(w.prediction_psi), _fmt(w.confidence_ks_p), _fmt(w.embedding_mmd_p),
                     _fmt(w.ood_rate), _fmt(w.accuracy), _fmt(w.positive_rate_gap))
    print_rich(grid)
    fresh = result.alerts[len(result.alerts) - result.new_events:] if result.new_events else []
    for event in fresh:
        typer.echo(f"new: alert {event.status} ({event.severity}) at {event.window_end[:19]}: {event.message}")
    earlier = len(result.alerts) - len(fresh)
    if earlier:
        typer.echo(f"{earlier} earlier alert event(s) in results/monitoring.json; active now: "
                   f"{', '.join(result.active_alerts) or 'none'}"
                   + (f"; held by their cooldown now: {', '.join(result.suppressed_alerts)}"
                      if result.suppressed_alerts else ""))
    if result.reaudit is not None:
        r = result.reaudit
        typer.echo(f"re-audit on {r.n} labelled answers: accuracy {_fmt(r.performance['accuracy'], 4)} "
                   f"(at release, {r.reference_split} split: {r.training['accuracy']:.4f}), macro-F1 "
                   f"{_fmt(r.performance['macro_f1'], 4)}; "
                   f"{r.note}")
    typer.echo("written: results/monitoring.json (trustfm report plots the windows)")
