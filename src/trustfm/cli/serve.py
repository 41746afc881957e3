"""``trustfm serve RUN_DIR``: the inference service; ``trustfm serve keys create|revoke|list RUN_DIR``: its API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table


class _StartByDefault(TyperGroup):
    """``serve RUN_DIR ...`` means ``serve start RUN_DIR ...``; ``serve keys ...`` is the keys group."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "start")
        return super().resolve_command(ctx, args)


serve_app = typer.Typer(cls=_StartByDefault, help="Serve a run's model over HTTP, and manage its API keys.",
                        no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="API keys of a run's service (stored as hashes; a key is shown once).",
                       no_args_is_help=True, rich_markup_mode=None)
serve_app.add_typer(keys_app, name="keys")
app.add_typer(serve_app, name="serve")

KEYS_FILE = typer.Option(None, "--keys-file", help="keys file [default: RUN_DIR/serving/keys.json]")
STATE_URL = typer.Option(None, "--state-url", help="PostgreSQL URL of the keys shared by replicas (the serve "
                                                   "settings' state_url); instead of the keys file")


def _store(run_dir: Path, keys_file: Optional[Path], state_url: Optional[str]):
    from trustfm.runs import existing_run
    from trustfm.serve.settings import open_key_store

    existing_run(run_dir)
    return open_key_store(run_dir, keys_file=keys_file, state_url=state_url)


@keys_app.command("create")
def create_key(run_dir: Path = typer.Argument(..., help="the served run folder"),
               name: str = typer.Option(..., "--name", help="who the key is for"),
               keys_file: Optional[Path] = KEYS_FILE, state_url: Optional[str] = STATE_URL) -> None:
    """Create a key and print it once (only its hash is kept)."""
    key = _store(run_dir, keys_file, state_url).create(name)
    typer.echo(key)
    typer.echo(f"key '{name}' created; it is shown only now", err=True)


@keys_app.command("revoke")
def revoke_key(run_dir: Path = typer.Argument(..., help="the served run folder"),
               name: str = typer.Argument(..., help="the key's name or id"),
               keys_file: Optional[Path] = KEYS_FILE, state_url: Optional[str] = STATE_URL) -> None:
    """Revoke a key; a running service refuses it from its next request (replicas: within keys_refresh_s)."""
    record = _store(run_dir, keys_file, state_url).revoke(name)
    typer.echo(f"revoked key '{record['name']}' ({record['id']})")


@keys_app.command("list")
def list_keys(run_dir: Path = typer.Argument(..., help="the served run folder"),
              keys_file: Optional[Path] = KEYS_FILE, state_url: Optional[str] = STATE_URL,
              output_format: OutputFormat = FORMAT_OPTION) -> None:
    """Active keys: id, name, creation time (never the key)."""
    active = _store(run_dir, keys_file, state_url).active()
    if output_format is OutputFormat.json:
        emit_json(active)
        return
    rows = table(f"API keys of {run_dir}", ["id", "name", "created"])
    for record in active:
        rows.add_row(record["id"], record["name"], record["created"])
    print_rich(rows)


@serve_app.command("start")
def start(
    run_dir: Path = typer.Argument(..., help="run folder to serve (its report must be signed and intact)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML of serve settings (ServeSettings)"),
    host: Optional[str] = typer.Option(None, "--host", help="[host] 127.0.0.1"),
    port: Optional[int] = typer.Option(None, "--port", help="[port] 8000"),
    workers: Optional[int] = typer.Option(None, "--workers", help="[workers] processes, each with the model"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="[rules] output rules applied to every answer"),
    log_url: Optional[str] = typer.Option(None, "--log-url", help="[log_url] SQLAlchemy URL of the request log"),
    state_url: Optional[str] = typer.Option(None, "--state-url", help="[state_url] PostgreSQL URL where replicas "
                                            "share API keys, rate limits, budgets and the extraction watch"),
    backend: Optional[str] = typer.Option(None, "--backend", help="[backend] auto (a torch model exported to ONNX "
                                          "Runtime at start-up, checked against torch), onnx or torch"),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without API keys (loopback testing only)"),
    unsigned: bool = typer.Option(False, "--unsigned", help="serve a run whose report is not signed (not advised)"),
    allow_failed_gate: bool = typer.Option(False, "--allow-failed-gate", help="[allow_failed_gate] serve a run whose "
                                           "release gate failed (logged, and shown in /v1/model and /metrics)"),
    ssl_certfile: Optional[Path] = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)"),
    ssl_keyfile: Optional[Path] = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)"),
    monitor_every: Optional[str] = typer.Option(None, "--monitor-every", help="also run trustfm monitor in the "
                                                "background every duration (10m); its gauges join /metrics"),
    monitor_window: str = typer.Option("1h", "--monitor-window", help="with --monitor-every: the window size "
                                                                      "(1h, or a number of answers)"),
    alerts_file: Optional[Path] = typer.Option(None, "--alerts", help="with --monitor-every: alert rules YAML"),
) -> None:
    """Serve RUN_DIR's model: predict, explain, feedback, model info, health, Prometheus metrics."""
    from trustfm.serve.app import check_release_gate
    from trustfm.serve.run import serve_run, settings_from
    from trustfm.serve.settings import default_paths

    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers, "rules": rules,
                                   "log_url": log_url, "state_url": state_url,
                                   "backend": backend}.items() if v is not None}
    if no_auth:
        overrides["auth"] = False
    if unsigned:
        overrides["require_signed_report"] = False
    if allow_failed_gate:
        overrides["allow_failed_gate"] = True
    settings = settings_from(config, overrides)
    signed = _verified_report(run_dir) if settings.require_signed_report else None
    check_release_gate(run_dir, settings, warn=False)
    typer.echo(f"serving {run_dir} on http{'s' if ssl_certfile else ''}://{settings.host}:{settings.port} "
               f"({settings.workers} worker{'s' if settings.workers > 1 else ''}); stop with Ctrl-C or SIGTERM",
               err=True)
    extra = None
    if monitor_every is not None:
        extra = _start_background_monitor(run_dir, log_url=default_paths(run_dir, settings)[1], every=monitor_every,
                                          window=monitor_window, alerts_file=alerts_file, workers=settings.workers)
    serve_run(run_dir, settings, signed_report_ok=signed, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
              extra_registry=extra)


def _start_background_monitor(run_dir: Path, *, log_url: str, every: str, window: str, alerts_file: Path | None,
                              workers: int):
    """A daemon thread running the monitor every ``every``; returns the registry holding its gauges (served by
    the app's /metrics with one worker; with several, the workers' /metrics cannot see this process's gauges)."""
    import threading

    from prometheus_client import CollectorRegistry

    from trustfm.errors import ConfigError
    from trustfm.monitor.alerts import AlertConfig, load_alert_config, parse_duration
    from trustfm.monitor.run import MonitorGauges, monitor_loop, parse_window

    if workers > 1:
        raise ConfigError("--monitor-every runs with one worker; with --workers N run trustfm monitor --every "
                          "beside the server (its gauges on --metrics-port)")
    alerts = load_alert_config(alerts_file) if alerts_file is not None else AlertConfig()
    pause = parse_duration(every, field="--monitor-every").total_seconds()
    parse_window(window)
    registry = CollectorRegistry()
    gauges = MonitorGauges(registry)
    threading.Thread(target=monitor_loop, name="trustfm-monitor", daemon=True, kwargs=dict(
        run_dir=run_dir, log_url=log_url, window=window, alerts=alerts, every_s=pause, gauges=gauges)).start()
    return registry


def _verified_report(run_dir: Path) -> bool:
    """The run's report signature holds and every file the service reads is the one it signed (nothing added
    since); data files may be absent on a serving machine: they are not the model."""
    from trustfm.errors import ConfigError
    from trustfm.report.provenance import verify_report
    from trustfm.serve.settings import SERVED_RUN_FILES

    report = run_dir / "report.json"
    if not report.is_file():
        raise ConfigError(f"{run_dir} has no signed report: run `trustfm report {run_dir}` first (or --unsigned)")
    result = verify_report(report, check_data=False)
    if not result.signature_valid:
        raise ConfigError(f"refusing to serve {run_dir}: its report's signature does not hold "
                          f"({'; '.join(result.problems)})")
    listed = [f for f in result.files if f.relative is not None]
    if not any(f.relative.startswith("model/") for f in listed):
        raise ConfigError(f"refusing to serve {run_dir}: the signed report lists no model files")
    if not any(f.relative == "config.yaml" for f in listed):
        raise ConfigError(f"refusing to serve {run_dir}: its report signs the model and results only (an older "
                          f"trustfm); run `trustfm report {run_dir}` again")
    bad = result.unsound(SERVED_RUN_FILES)
    if bad:
        what = {"added": "not covered by the signed report (added after signing)"}.get(
            bad[0].status, f"{bad[0].status} since the report was signed")
        raise ConfigError(f"refusing to serve {run_dir}: {bad[0].relative} is {what}"
                          + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                          + f"; run `trustfm report {run_dir}` to sign what it holds now, or remove it")
    return True
