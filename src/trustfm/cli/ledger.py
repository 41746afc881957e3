"""``trustfm ledger``: the privacy ledger's entries, and abandoning a killed DP run's reservation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import ledger_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich, table

LEDGER_OPTION = typer.Option(None, "--ledger", help="ledger file [privacy.ledger] (default: $TRUSTFM_PRIVACY_LEDGER "
                                                    "or ~/.trustfm/privacy-ledger.jsonl)")


@ledger_app.command("show")
def show(ledger: Optional[Path] = LEDGER_OPTION, output_format: OutputFormat = FORMAT_OPTION) -> None:
    """Every DP run in the ledger: dataset, status (reserved, settled, released) and epsilon."""
    from trustfm.train.ledger import PrivacyLedger, ledger_path

    book = PrivacyLedger(ledger_path(ledger))
    entries = book.entries()
    if output_format is OutputFormat.json:
        emit_json(entries)
        return
    rows = table(f"privacy ledger {book.path}", ["run", "dataset sha256", "status", "epsilon"])
    for e in entries:
        rows.add_row(str(e.get("run_dir", "")), e["data_sha256"][:12], e.get("status", "settled"),
                     f"{e['epsilon']:.3f}")
    print_rich(rows)


@ledger_app.command("abandon")
def abandon(
    run_dir: Path = typer.Argument(..., help="an unfinished DP run (killed mid-training) that will not be resumed"),
    ledger: Optional[Path] = LEDGER_OPTION,
) -> None:
    """Delete what a killed DP run trained (checkpoints, model) and release its reserved epsilon.

    The ledger is ``--ledger``, else the one the run was trained against (its ``privacy.ledger``).
    """
    import shutil

    from trustfm.config import load_config
    from trustfm.errors import ConfigError
    from trustfm.runs import RunRecord, existing_run
    from trustfm.train.ledger import PrivacyLedger, ledger_path, run_key

    paths = existing_run(run_dir)
    record = RunRecord.load(paths)
    if record.status == "complete":
        raise ConfigError(f"{run_dir} finished training: its model exists, so its epsilon is spent for good")
    # the noisy updates live in the checkpoint and the best model: once deleted, nothing trained on the data remains
    for folder in (paths.checkpoints, paths.model):
        shutil.rmtree(folder, ignore_errors=True)
    record.status = "abandoned"
    record.save(paths)
    book = PrivacyLedger(ledger_path(ledger or load_config(paths.config).privacy.ledger))
    released = book.release(run_key(paths.root), reason="abandoned")
    typer.echo(f"{run_dir}: checkpoints and model deleted; "
               + ("reservation released" if released else "no reservation in the ledger"))
