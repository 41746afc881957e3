"""``trustfm federate``: federated fine-tuning on Flower, in simulation or on a SuperLink."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, print_rich, table


@app.command()
def federate(
    config: Path = typer.Argument(..., help="run config YAML with a federated: block"),
    superlink: Optional[str] = typer.Option(
        None, "--superlink", help="HOST:PORT of a running Flower SuperLink (its HTTP API, e.g. 127.0.0.1:9091); "
                                  "without it every client is simulated in this process"),
    clients: Optional[int] = typer.Option(None, help="number of clients [federated.clients]"),
    rounds: Optional[int] = typer.Option(None, help="federated rounds [federated.rounds]"),
    strategy: Optional[str] = typer.Option(
        None, help="fedavg | fedprox | fedmedian | fedtrimmedavg | krum [federated.strategy]"),
    partition: Optional[str] = typer.Option(None, help="iid | dirichlet | column [federated.partition.method]"),
    alpha: Optional[float] = typer.Option(None, help="Dirichlet concentration, > 0 [federated.partition.alpha]"),
    local_epochs: Optional[int] = typer.Option(None, help="epochs per client per round [federated.local_epochs]"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="run folder [output_dir]"),
    poisoning_check: Optional[str] = typer.Option(
        None, "--poisoning-check", help="comma-separated rules (fedavg,fedmedian,krum,...): also simulate the "
                                        "federation clean and with a poisoned client under each, and report both"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key: --set federated.fraction=0.5"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train one model over several clients' data with Flower; the result is a normal run folder."""
    from trustfm.cli._config_options import overrides_from_flags
    from trustfm.config import load_config
    from trustfm.pipeline import federate_and_evaluate
    from trustfm.results import load_result

    cfg = load_config(config, overrides_from_flags(dict(locals()), set_))
    paths = federate_and_evaluate(cfg, superlink=superlink, show_progress=not quiet)
    poisoning = None
    if poisoning_check:
        from trustfm.federated.poisoning import poisoning_check as check

        poisoning = check(cfg, paths.root, rules=[r.strip() for r in poisoning_check.split(",") if r.strip()],
                          show_progress=not quiet)
    result = load_result(paths.result("federated"))
    for flag in result.flags():
        typer.echo(f"warning: {flag}", err=True)
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    if poisoning is not None:
        attack = poisoning.attack
        rows = table(f"poisoning check: {attack.get('clients')} {attack.get('attack')} client(s), "
                     f"{poisoning.split} split (results/federated-poisoning.json)",
                     ["rule", "accuracy clean", "accuracy poisoned", "drop"])
        for r in poisoning.rules:
            rows.add_row(r.rule, f"{r.clean_accuracy:.4f}", f"{r.poisoned_accuracy:.4f}", f"{r.accuracy_drop:+.4f}")
        print_rich(rows)
    rows = [(name, f"{value:.0f}" if value == int(value) and "accuracy" not in name else f"{value:.4f}")
            for name, value in result.metrics().items()]
    print_rich(metrics_table(f"federated {result.strategy}, {result.clients} clients — {paths.root}", rows))
