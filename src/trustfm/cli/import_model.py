"""``trustfm import MODEL_DIR -o RUN_DIR``: a sequence classifier trained elsewhere, as a run folder to audit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, performance_rows, print_rich


@app.command("import")
def import_model(
    model_dir: Optional[Path] = typer.Argument(None, help="a fine-tuned Hugging Face sequence-classification "
                                               "checkpoint folder (or --endpoint URL)"),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="the run folder to write [output_dir]"),
    test_data: Optional[Path] = typer.Option(None, help="labelled file to audit it on [data.test]"),
    data: Optional[Path] = typer.Option(None, "--data", help="the data it was trained on, where you have it: "
                                        "membership and data-quality audits read it [data.train]"),
    validation_data: Optional[Path] = typer.Option(None, help="validation file, optional [data.validation]"),
    data_format: Optional[str] = typer.Option(None, help="csv|tsv|jsonl|parquet|hf [data.format]"),
    text_column: Optional[str] = typer.Option(None, help="column holding the text [data.text_column]"),
    label_column: Optional[str] = typer.Option(None, help="column holding the label [data.label_column]"),
    id_column: Optional[str] = typer.Option(None, help="column of unique row ids, optional [data.id_column]"),
    group_column: Optional[list[str]] = typer.Option(None, help="sensitive/group column, repeatable "
                                                     "[data.group_columns]"),
    max_length: Optional[int] = typer.Option(None, help="tokens per text [data.max_length]"),
    task: Optional[str] = typer.Option(None, help="what the labels mean: sentiment|toxicity|hate_speech|other [task]"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow pickle weights (converted to "
                                      "safetensors in the run) [model.allow_pickle]"),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="instead of a folder: the URL of a classifier "
                                           "to audit through its answers"),
    protocol: str = typer.Option("trustfm", "--protocol", help="trustfm (another trustfm service), kserve-v2, or "
                                 "template (give --endpoint-config)"),
    endpoint_config: Optional[Path] = typer.Option(None, "--endpoint-config", help="YAML of the endpoint's settings "
                                                   "(request template, probabilities path, model name, ...)"),
    classes: Optional[str] = typer.Option(None, "--classes", help="the endpoint's classes in output order, comma-"
                                          "separated (a trustfm service names its own)"),
    auth_env: Optional[str] = typer.Option(None, "--auth-env", help="environment variable holding the endpoint's "
                                           "token (never written anywhere)"),
    max_requests: Optional[int] = typer.Option(None, "--max-requests", min=1, help="requests this command may send"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key: --set fairness.sensitive=[group]"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Copy a checkpoint into a run folder (its own head and classes), record what is known and what is not,
    evaluate it on the test file; then audit, report, gate, verify, compress, serve and monitor it like any run."""
    from trustfm.cli._config_options import overrides_from_flags
    from trustfm.config import load_config
    from trustfm.pipeline import import_and_evaluate
    from trustfm.runs import read_json

    from trustfm.errors import ConfigError

    flags = {k: v for k, v in locals().items() if k not in ("endpoint", "protocol", "endpoint_config", "classes",
                                                             "auth_env", "max_requests")}
    if (model_dir is None) == (endpoint is None):
        raise ConfigError("give a checkpoint folder or --endpoint URL (one of them)")
    if endpoint is None:
        flags["model"] = str(model_dir)
        paths = import_and_evaluate(model_dir, load_config(None, overrides_from_flags(flags, set_)),
                                    allow_pickle=allow_pickle, show_progress=not quiet)
    else:
        from trustfm.pipeline import import_endpoint_and_evaluate

        spec = _endpoint_spec(endpoint, protocol, endpoint_config, classes, auth_env, max_requests)
        paths = import_endpoint_and_evaluate(spec, load_config(None, overrides_from_flags(flags, set_)),
                                             show_progress=not quiet)
        model_dir = endpoint
    result = read_json(paths.result("performance"))
    if output_format is OutputFormat.json:
        emit_json({"run_dir": str(paths.root), "imported": read_json(paths.run_info)["imported"],
                   "performance": result})
        return
    print_rich(metrics_table(f"{result['split']} set — {paths.root} (imported from {model_dir})",
                             performance_rows(result)))
    typer.echo("unknown for an imported model (the report and model card say so): "
               + ", ".join(read_json(paths.run_info)["imported"]["unknown"]), err=True)
    typer.echo(f"next: trustfm audit {paths.root} --all", err=True)


def _endpoint_spec(url, protocol, config_file, classes, auth_env, max_requests):
    """The :class:`~trustfm.models.endpoint.EndpointSpec` from the flags and the optional YAML; one ConfigError
    line naming the field otherwise."""
    from pydantic import ValidationError

    from trustfm.config.load import read_yaml_mapping
    from trustfm.errors import ConfigError
    from trustfm.models.endpoint import EndpointSpec

    fields = read_yaml_mapping(config_file, what="endpoint config") if config_file is not None else {}
    fields = {**fields, "url": url, "protocol": fields.get("protocol", protocol)}
    if classes:
        fields["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
    if auth_env:
        fields["auth_env"] = auth_env
    if max_requests:
        fields["max_requests"] = max_requests
    try:
        return EndpointSpec.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{config_file or 'endpoint'}: field {'.'.join(map(str, first['loc']))}: "
                          f"{first['msg']}") from None
