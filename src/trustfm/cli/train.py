"""``trustfm train``: fine-tune from a config file and/or flags, or resume a killed run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import (
    FORMAT_OPTION,
    OutputFormat,
    emit_json,
    metrics_table,
    performance_rows,
    print_rich,
)


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="run config YAML (optional: flags can say it all)"),
    data: Optional[Path] = typer.Option(None, "--data", help="training file [data.train]"),
    validation_data: Optional[Path] = typer.Option(None, help="validation file [data.validation]"),
    test_data: Optional[Path] = typer.Option(None, help="test file [data.test]"),
    data_format: Optional[str] = typer.Option(None, help="csv|tsv|jsonl|parquet|hf [data.format]"),
    modality: Optional[str] = typer.Option(None, help="text|image: what a row's input is; image data is a folder "
                                                      "of class folders or a table of image paths [data.modality]"),
    text_column: Optional[str] = typer.Option(None, help="column holding the text [data.text_column]"),
    label_column: Optional[str] = typer.Option(None, help="column holding the label [data.label_column]"),
    id_column: Optional[str] = typer.Option(None, help="column of unique row ids, optional [data.id_column]"),
    group_column: Optional[list[str]] = typer.Option(None, help="sensitive/group column, repeatable [data.group_columns]"),
    max_length: Optional[int] = typer.Option(None, help="tokens per text [data.max_length]"),
    model: Optional[str] = typer.Option(None, help="'default' or a local model folder [model.name_or_path]"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow pickle weights [model.allow_pickle]"),
    epochs: Optional[int] = typer.Option(None, help="passes over the training split [train.epochs]"),
    batch_size: Optional[int] = typer.Option(None, help="texts per step [train.batch_size]"),
    learning_rate: Optional[float] = typer.Option(None, help="peak AdamW learning rate [train.learning_rate]"),
    seed: Optional[int] = typer.Option(None, help="seed for split, initialisation and batch order [seed]"),
    task: Optional[str] = typer.Option(None, help="what the labels mean: sentiment|toxicity|hate_speech|other [task]"),
    dp_epsilon: Optional[float] = typer.Option(None, help="train with DP-SGD to this epsilon [privacy.dp.epsilon]"),
    redact: bool = typer.Option(False, "--redact", help="replace personal data in every text first [privacy.redact]"),
    adversarial_training: Optional[str] = typer.Option(
        None, help="fgm | pgd | freelb embedding-space adversarial training [robustness.adversarial_training.method]"),
    fairness_mitigation: Optional[str] = typer.Option(
        None, help="reweigh | balanced_sampling | counterfactual_augmentation [fairness.mitigation]"),
    sensitive: Optional[list[str]] = typer.Option(
        None, help="sensitive column for fairness mitigation and audit, repeatable [fairness.sensitive]"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="run folder [output_dir]"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key: --set train.warmup_ratio=0.1"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this folder"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="data-parallel processes on this machine (torchrun, gloo); "
                                                        "several machines: see docs/usage.md"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Fine-tune a classifier, keep the best epoch, evaluate it on the test split."""
    from trustfm.cli._config_options import overrides_from_flags
    from trustfm.config import load_config
    from trustfm.errors import ConfigError
    from trustfm.pipeline import train_and_evaluate
    from trustfm.runs import read_json

    flags = dict(locals())
    if nproc > 1:
        from trustfm.cli._torchrun import relaunch_under_torchrun

        raise typer.Exit(relaunch_under_torchrun(nproc))
    if resume is not None:
        if config is not None or overrides_from_flags(flags, set_):
            raise ConfigError("--resume takes no config or settings: the run continues with its saved config")
        from trustfm.runs import existing_run

        cfg = load_config(existing_run(resume).config, {"output_dir": str(resume)})
    else:
        cfg = load_config(config, overrides_from_flags(flags, set_))
    paths = train_and_evaluate(cfg, resume=resume is not None, show_progress=not quiet)
    if paths is None:  # a torchrun process other than rank 0: rank 0 reports
        return
    result = read_json(paths.result("performance"))
    if output_format is OutputFormat.json:
        emit_json({"run_dir": str(paths.root), "performance": result})
    else:
        print_rich(metrics_table(f"{result['split']} set — {paths.root}", performance_rows(result)))
