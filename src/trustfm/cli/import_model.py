"""``trustfm import MODEL_DIR -o RUN_DIR``: a sequence classifier trained elsewhere, as a run folder to audit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, metrics_table, performance_rows, print_rich


@app.command("import")
def import_model(
    model_dir: Path = typer.Argument(..., help="a fine-tuned Hugging Face sequence-classification checkpoint folder"),
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

    flags = dict(locals())
    flags["model"] = str(model_dir)
    overrides = overrides_from_flags(flags, set_)
    paths = import_and_evaluate(model_dir, load_config(None, overrides), allow_pickle=allow_pickle,
                                show_progress=not quiet)
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
