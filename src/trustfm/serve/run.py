"""Start the service: check the model against the run's records, then run uvicorn (one or more workers)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from trustfm.errors import ConfigError
from trustfm.serve.settings import ServeSettings

log = logging.getLogger("trustfm.serve")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message. The service's messages name keys by id and counts,
    never a request's text."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        return json.dumps({"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                           "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()})


def json_logging() -> None:
    """Send the service's logs (and uvicorn's errors) to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    for name in ("trustfm.serve", "trustfm.monitor", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING if name == "uvicorn.error" else logging.INFO)


def settings_from(path: Path | None, overrides: dict) -> ServeSettings:
    """Serve settings from a YAML file (optional) and command-line overrides; ConfigError names the field."""
    from pydantic import ValidationError

    from trustfm.config.load import read_yaml_mapping

    data = read_yaml_mapping(path, what="serve settings") if path is not None else {}
    try:
        return ServeSettings.model_validate({**data, **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path or 'serve settings'}: field {where}: {first['msg']}") from None


def serve_run(run_dir: str | Path, settings: ServeSettings, *, signed_report_ok: bool | None = None,
              ssl_certfile: Path | None = None, ssl_keyfile: Path | None = None, extra_registry=None) -> None:
    """Run the service for ``run_dir`` until SIGTERM/SIGINT (in-flight requests finish first).

    ``signed_report_ok``: the caller's verdict on the run's signed report (the CLI verifies it, a layer above);
    None: not checked, refused when ``settings.require_signed_report``. ``extra_registry``: a Prometheus
    registry whose metrics ``/metrics`` also serves (one worker only), e.g. a background monitor's gauges.
    """
    import uvicorn

    from trustfm.serve.app import check_model_files, check_release_gate, create_app

    run_dir = Path(run_dir)
    if settings.require_signed_report and not signed_report_ok:
        raise ConfigError(f"{run_dir}: the run's signed report was not verified; run `trustfm report {run_dir}` "
                          "(and `trustfm verify`), or pass --unsigned")
    check_model_files(run_dir)
    check_release_gate(run_dir, settings, warn=False)  # refused here, once, before any worker starts
    if settings.state_url is not None:
        from trustfm.serve.settings import open_key_store

        open_key_store(run_dir, state_url=settings.state_url).close()  # reachable, and PostgreSQL: one line if not
    json_logging()
    if settings.workers > 1 and settings.state_url is None:
        log.warning("%d workers keep their own rate limits, budgets and extraction watch (each allows the full "
                    "limit); set state_url to share them", settings.workers)
    ssl = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)} if ssl_certfile else {}
    # log_config=None: uvicorn keeps the JSON handlers set above (its own config would replace them)
    common = dict(host=settings.host, port=settings.port, log_level="warning", access_log=False, log_config=None,
                  timeout_graceful_shutdown=30, **ssl)
    if settings.workers == 1:
        uvicorn.run(create_app(run_dir, settings, extra_registry=extra_registry), **common)
        return
    # several processes: each builds its app from the environment; Prometheus counters are merged from files
    os.environ["TRUSTFM_SERVE_RUN"] = str(run_dir.resolve())
    os.environ["TRUSTFM_SERVE_SETTINGS"] = json.dumps(settings.model_dump(mode="json"))
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="trustfm-metrics-"))
    uvicorn.run("trustfm.serve.app:app_from_environment", factory=True, workers=settings.workers, **common)
