"""``trustfm explain``: token attributions for a text, or the dataset-level explanation audit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, print_rich


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="run folder written by trustfm train"),
    text: Optional[list[str]] = typer.Option(None, "--text", help="explain this text (repeatable)"),
    method: str = typer.Option("integrated_gradients", "--method",
                               help="integrated_gradients | occlusion | kernel_shap | random | all"),
    texts_for_faithfulness: int = typer.Option(20, "--faithfulness-texts", help="texts scored for faithfulness"),
    texts_for_global: int = typer.Option(150, "--global-texts", help="texts aggregated for the global view"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """With --text: per-token scores. Without: faithfulness of each method, global terms, error slices."""
    from trustfm.audit.explanations.methods import METHODS, make_explainer
    from trustfm.audit.context import AuditContext
    from trustfm.audit.explanations.plugin import ExplanationTexts

    if not text:
        from trustfm.audit.explanations.plugin import explain_run

        report = explain_run(run_dir, faithfulness_texts=texts_for_faithfulness, global_texts=texts_for_global,
                             show_progress=True)["explanations"]
        if output_format is OutputFormat.json:
            emit_json(report.model_dump(mode="json"))
            return
        from rich.table import Table

        table = Table(title=f"faithfulness (ERASER) on {report.dataset}")
        for column in ("method", "comprehensiveness ↑", "sufficiency ↓"):
            table.add_column(column)
        for s in report.faithfulness.scores:
            table.add_row(s.method + (" ★" if s.method == report.faithfulness.most_faithful else ""),
                          f"{s.comprehensiveness:.3f}", f"{s.sufficiency:.3f}")
        print_rich(table)
        for label, terms in report.global_view.top_terms.items():
            typer.echo(f"{label}: " + ", ".join(t.term for t in terms[:10]))
        typer.echo(f"budget: faithfulness on {texts_for_faithfulness} texts, global view on {texts_for_global} "
                   "(raise --faithfulness-texts / --global-texts for more; each text costs about 1 s here)", err=True)
        return
    ctx = AuditContext(run_dir)
    runner = ctx.predictor
    methods = [m for m in METHODS if m != "random"] if method == "all" else [method]
    results = []
    for name in methods:
        explainer = make_explainer(name, runner.model, runner.tokenizer, max_length=ctx.config.data.max_length,
                                   seed=ctx.config.seed)
        results += [explainer.explain(t, runner.label_names) for t in text]
    saved = ExplanationTexts(attributions=results)
    ctx.save("explanation-texts", saved)
    if output_format is OutputFormat.json:
        emit_json(saved.model_dump(mode="json"))
        return
    import sys

    from rich.text import Text

    if not sys.stdout.isatty():  # a file or a pipe gets no colours: the scores themselves, one word each
        for r in results:
            typer.echo(f"{r.method} → {r.target} ({r.target_probability:.3f}): "
                       + " ".join(f"{w} ({v:+.3f})" for w, v in zip(r.words, r.word_scores)))
        return
    for r in results:
        peak = max((abs(s) for s in r.word_scores), default=1.0) or 1.0
        line = Text(f"{r.method:>22} → {r.target} ({r.target_probability:.3f}): ")
        for token, score in zip(r.words, r.word_scores):
            strength = int(255 * (1 - min(abs(score) / peak, 1.0)))
            colour = f"rgb(255,{strength},{strength})" if score > 0 else f"rgb({strength},{strength},255)"
            line.append(token + " ", style=f"on {colour}")
        print_rich(line)
