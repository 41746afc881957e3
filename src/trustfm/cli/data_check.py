"""``trustfm data check``: every problem in a dataset, counted, before any training."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import data_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich
from trustfm.fileio import write_lines_atomic


@data_app.command("check")
def check(
    data: Path = typer.Argument(..., help="data file (csv, tsv, jsonl, parquet) or saved dataset folder; with "
                                          "--modality image, a table of image paths or a folder of class folders"),
    modality: Optional[str] = typer.Option(None, help="text|image: what a row's input is [data.modality]"),
    config: Optional[Path] = typer.Option(None, "--config", help="run config whose data section applies"),
    data_format: Optional[str] = typer.Option(None, help="[data.format]"),
    text_column: Optional[str] = typer.Option(None, help="[data.text_column]"),
    label_column: Optional[str] = typer.Option(None, help="[data.label_column]"),
    id_column: Optional[str] = typer.Option(None, help="[data.id_column]"),
    group_column: Optional[list[str]] = typer.Option(None, help="[data.group_columns]"),
    max_length: Optional[int] = typer.Option(None, help="[data.max_length]"),
    model: Optional[str] = typer.Option(None, help="tokenizer for the length check [model.name_or_path]"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any config key"),
    issues: bool = typer.Option(True, "--issues/--no-issues",
                                help="label issues (cleanlab), near duplicates and leakage; embeds texts with the encoder"),
    test_data: Optional[Path] = typer.Option(None, "--test-data", help="test file to check for train/test leakage"),
    near_threshold: float = typer.Option(0.97, "--near-threshold", help="cosine similarity for near duplicates"),
    fix: Optional[Path] = typer.Option(None, "--fix", help="write a cleaned copy here (+ OUT.log.jsonl of every change)"),
    relabel: bool = typer.Option(False, "--relabel", help="with --fix: relabel label issues instead of removing them"),
    model_sample: int = typer.Option(8000, "--model-sample", min=0,
                                     help="rows embedded for label issues and near duplicates (a seeded sample; "
                                          "0: all rows). Exact duplicates and leakage always cover every row"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Count rows, labels and problems; find label issues, duplicates and leakage; optionally write a cleaned copy.

    Exits 3 if a problem's policy is 'error' (unless --fix removed those rows).
    """
    from trustfm.cli._config_options import overrides_from_flags
    from trustfm.config import load_config
    from trustfm.config.schema import ProblemPolicies
    from trustfm.data.batching import encode_texts
    from trustfm.data.io import read_table_source
    from trustfm.data.prepare import rare_class_rejections
    from trustfm.data.validate import labelled_columns, validate_table
    from trustfm.errors import DataError

    flags = dict(locals())
    cfg = load_config(config, overrides_from_flags(flags, set_))
    # collect every problem (drop all), then judge against the configured policies
    collect = ProblemPolicies(**{k: "drop" for k in ProblemPolicies.model_fields})
    if cfg.data.on_problem.control_characters in ("strip", "keep"):
        collect.control_characters = cfg.data.on_problem.control_characters
    images = cfg.data.modality == "image"
    if images:
        # every file opened and decoded as training would; a path that leaves the data root still stops the check
        from trustfm.data.images import load_labelled_images

        if fix is not None and Path(data).is_dir():
            raise DataError("--fix rewrites a table; a folder of class folders has none (remove the files that "
                            "rejected rows name instead)", file=str(data))
        part = load_labelled_images(Path(data), cfg.data.model_copy(update={"on_problem": collect}))
        frame = None if Path(data).is_dir() else read_table_source(data, cfg.data.format)[0]
        read_as, read_notes = part.notes[0].removeprefix("read as "), part.notes[1:]
    else:
        wanted = labelled_columns(cfg.data, cfg.data.text_column, labelled=True)[3]
        # only the configured columns are read (memory grows with them, not with the file's width);
        # --fix writes a cleaned copy of every column, so it reads them all
        frame, source = read_table_source(data, cfg.data.format, columns=None if fix is not None else wanted)
        part = validate_table(
            frame,
            file=str(data),
            text_column=cfg.data.text_column,
            label_column=cfg.data.label_column,
            id_column=cfg.data.id_column,
            group_columns=cfg.data.group_columns,
            policies=collect,
        )
        read_as, read_notes = source.describe(), source.notes + part.notes
    part.rejected += rare_class_rejections(part, cfg.data)
    reasons = Counter(r.reason for r in part.rejected)
    kinds = Counter(r.kind for r in part.rejected)
    first_rows: dict[str, list[int]] = {}
    for r in part.rejected:
        rows = first_rows.setdefault(r.kind, [])
        if len(rows) < 5:
            rows.append(r.row)

    too_long, tokens = 0, None
    if not images:
        from transformers import AutoTokenizer

        from trustfm.models.loading import resolve_model_dir

        tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(cfg.model.name_or_path), local_files_only=True)
        encoded = encode_texts(tokenizer, part.texts, cfg.data.max_length)
        lengths = encoded.full_lengths  # before truncation: what the texts are, not what the model keeps
        too_long = int(encoded.truncated.sum())
        if too_long:
            kinds["too_long"] = too_long
            first_rows["too_long"] = [int(part.rows[i]) for i in encoded.truncated.nonzero()[0][:5]]
        tokens = {  # per text, special tokens included, before truncation to max_length
            "max_length": cfg.data.max_length,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "p95": float(_quantile(lengths, 0.95)),
            "max": int(lengths.max()) if len(lengths) else 0,
            "truncated": too_long,
        }
    report = {
        "file": str(data),
        "modality": cfg.data.modality,
        "rows": part.rows_in,
        "usable_rows": len(part) - (too_long if cfg.data.on_problem.too_long == "drop" else 0),
        "read_as": read_as,
        "read_notes": read_notes,
        "columns": [str(c) for c in frame.columns] if frame is not None else [],
        "labels": dict(Counter(part.labels).most_common()),
        "groups": {c: dict(Counter(v).most_common()) for c, v in part.groups.items()},
        "problems": dict(kinds),
        "problem_reasons": dict(reasons),
        "first_rows": first_rows,
        "policies": cfg.data.on_problem.model_dump(),
        "tokens": tokens,  # None for images
    }
    if issues or fix is not None:
        report["issues"], actions = _find_issues(part, cfg, test_data=test_data, near_threshold=near_threshold,
                                                 relabel=relabel, model_sample=model_sample)
        if fix is not None:
            report["fix"] = _write_fix(frame, part, actions, fix, cfg.data.label_column)
    blocking = {k: n for k, n in kinds.items() if getattr(cfg.data.on_problem, k) == "error"}
    report["blocking"] = blocking
    if output_format is OutputFormat.json:
        emit_json(report)
    else:
        _print(report)
    if blocking and fix is None:
        # the first blocking problem, located, then the count of each kind
        first = min((r for r in part.rejected if r.kind in blocking), key=lambda r: r.row, default=None)
        detail = ", ".join(f"{n} {k} (first at row {first_rows[k][0]})" for k, n in blocking.items())
        if first is None:  # only too_long, which has no rejection record here
            raise DataError(f"problems whose policy is 'error': {detail}", file=str(data))
        raise DataError(f"{first.reason}; problems whose policy is 'error': {detail}", file=str(data),
                        row=first.row, column=first.column)



def _find_issues(part, cfg, *, test_data, near_threshold: float, relabel: bool, model_sample: int):
    import numpy as np

    from trustfm.audit.data_quality.issues import clean_plan, find_issues, pretrained_features
    from trustfm.data.validate import label_order, validate_table
    from trustfm.data.io import read_table

    names = label_order(part.labels)
    positions = None
    if model_sample and len(part) > model_sample:
        # embedding is the cost (600-700 texts/s on 2 idle CPU cores; all of SST-2 train takes 96 s of 140 s):
        # a seeded sample keeps the check within half a minute
        positions = np.sort(np.random.default_rng(cfg.seed).choice(len(part), size=model_sample, replace=False))
    texts = part.texts if positions is None else [part.texts[i] for i in positions]
    features_of = pretrained_features(cfg)
    features = features_of(texts)
    test = None
    if test_data is not None and cfg.data.modality == "image":
        from trustfm.data.prepare import load_labelled

        test = load_labelled(Path(test_data), cfg.data, labelled=False)
    elif test_data is not None:
        test = validate_table(read_table(test_data, cfg.data.format), file=str(test_data),
                              text_column=cfg.data.text_column, label_column=None, policies=cfg.data.on_problem)
    findings = find_issues(
        part.texts, part.labels, part.rows, features, names, near_threshold=near_threshold, seed=cfg.seed,
        test_texts=test.texts if test else (), test_rows=test.rows if test else None,
        test_features=features_of(test.texts) if test else None, model_positions=positions,
    )
    actions = clean_plan(findings, relabel=relabel)
    by_kind = Counter(d.kind for d in findings.duplicates)
    summary = {
        "label_issues": len(findings.label_issues),
        "label_issue_rows": [i.row for i in findings.label_issues[:10]],
        "out_of_fold_accuracy": findings.out_of_fold_accuracy,
        "duplicates": dict(by_kind),
        "conflicting_duplicates": sum(1 for d in findings.duplicates if d.same_label is False),
        "duplicate_rows": [d.row for d in findings.duplicates[:10]],
        # test rows that repeat a training row: each test row counted once, by the first kind that matched
        "leakage": len(findings.leakage) if test is not None else None,
        "leakage_by_kind": dict(Counter(d.kind for d in findings.leakage)) if test is not None else None,
        "leakage_test_rows": [d.row for d in findings.leakage[:10]],
        "near_threshold": near_threshold,
        # label issues and near duplicates come from this many rows; exact duplicates and leakage from all
        "model_rows": len(part) if positions is None else len(positions),
    }
    return summary, actions


def _write_fix(frame, part, actions, out: Path, label_column: str) -> dict:
    """Write the cleaned copy (original columns, rows kept in order) and its change log; return counts."""
    import json

    from trustfm.data.io import write_table

    log_rows = [{"row": r.row, "action": "removed", "reason": f"invalid: {r.kind}", "detail": {"column": r.column}}
                for r in part.rejected]
    removed = {r.row for r in part.rejected}
    relabelled: dict[int, str] = {}
    for a in actions:
        if a.action == "removed":
            removed.add(a.row)
        else:
            relabelled[a.row] = str(a.detail["suggested"])
        log_rows.append(a.model_dump())
    cleaned = frame.copy()
    for row, label in relabelled.items():
        cleaned.iloc[row - 1, cleaned.columns.get_loc(label_column)] = label
    keep = [i for i in range(len(cleaned)) if i + 1 not in removed]
    write_table(cleaned.iloc[keep], out)
    log_path = out.with_name(out.name + ".log.jsonl")
    # row numbers and reasons only: never the texts
    write_lines_atomic(log_path, (json.dumps(entry) for entry in sorted(log_rows, key=lambda e: e["row"])))
    return {"output": str(out), "log": str(log_path), "rows_in": len(frame), "rows_out": len(keep),
            "removed": len(removed), "relabelled": len(relabelled)}


def _quantile(values, q: float) -> float:
    import numpy as np

    return float(np.quantile(values, q)) if len(values) else 0.0


def _print(report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"data check — {report['file']}")
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_row("read as", report["read_as"])
    for note in report["read_notes"]:
        table.add_row("note", note)
    table.add_row("rows", str(report["rows"]))
    table.add_row("usable rows", str(report["usable_rows"]))
    for label, n in report["labels"].items():
        table.add_row(f"label {label}", str(n))
    for column, counts in report["groups"].items():
        for value, n in counts.items():
            table.add_row(f"{column} = {value}", str(n))
    for kind, n in report["problems"].items():
        policy = report["policies"][kind]
        table.add_row(f"problem: {kind} ({policy})", f"{n} (rows {', '.join(map(str, report['first_rows'][kind]))}…)")
    tokens = report["tokens"]
    if tokens is not None:
        table.add_row("tokens before truncation: mean / p95 / max",
                      f"{tokens['mean']:.1f} / {tokens['p95']:.0f} / {tokens['max']}")
        table.add_row(f"texts longer than max_length {tokens['max_length']}", str(tokens["truncated"]))
    issues = report.get("issues")
    if issues:
        sampled = issues["model_rows"] < report["usable_rows"]
        table.add_row("label issues (cleanlab" + (f", on a sample of {issues['model_rows']} rows; --model-sample 0 "
                                                  "for all" if sampled else "") + ")", str(issues["label_issues"]))
        for kind, n in issues["duplicates"].items():
            table.add_row(f"duplicates: {kind}", str(n))
        table.add_row("duplicates with conflicting labels", str(issues["conflicting_duplicates"]))
        if issues["leakage"] is not None:
            by_kind = ", ".join(f"{n} {k}" for k, n in issues["leakage_by_kind"].items()) or "none"
            table.add_row(f"test rows that repeat a training row (exact, normalised, near ≥ {issues['near_threshold']})",
                          f"{issues['leakage']} ({by_kind})")
    if "fix" in report:
        f = report["fix"]
        table.add_row("cleaned copy", f"{f['output']}: {f['rows_out']} of {f['rows_in']} rows, "
                                      f"{f['relabelled']} relabelled (log: {f['log']})")
    print_rich(table)
