"""``trustfm audit corruption | adversarial | attributions``: the audits of image models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from trustfm.cli import audit_app
from trustfm.cli._output import FORMAT_OPTION, OutputFormat, emit_json, fmt_interval, print_rich, table

RUN_DIR = typer.Argument(..., help="run folder written by trustfm train (an image model)")
EXAMPLES = typer.Option(2, "--examples", help="example images kept in the result for the report (0: none, for "
                                              "images that must not leave the data)")


@audit_app.command("corruption")
def corruption(
    run_dir: Path = RUN_DIR,
    max_images: int = typer.Option(500, "--max-images", help="evaluation images to corrupt (a seeded sample)"),
    corruption_name: Optional[list[str]] = typer.Option(None, "--corruption", help="gaussian_noise, gaussian_blur, "
                                                                                  "jpeg, brightness (default: all)"),
    examples: int = EXAMPLES,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Accuracy and flip rate under common corruptions at severities 1-5 (ImageNet-C parameters)."""
    from trustfm.audit.corruption.corruptions import CORRUPTIONS
    from trustfm.audit.corruption.plugin import audit_corruption_run

    result = audit_corruption_run(run_dir, max_images=max_images, examples=examples,
                                  corruptions=tuple(corruption_name or CORRUPTIONS))["corruption"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"corruptions on {result.dataset}; clean accuracy {fmt_interval(result.clean_accuracy, digits=3)}",
                 ["corruption", *[f"severity {s.severity}" for s in result.corruptions[0].severities], "mean"])
    for c in result.corruptions:
        rows.add_row(c.corruption, *[fmt_interval(s.accuracy, digits=3) for s in c.severities], f"{c.mean_accuracy:.3f}")
    print_rich(rows)


@audit_app.command("adversarial")
def adversarial(
    run_dir: Path = RUN_DIR,
    max_images: int = typer.Option(200, "--max-images", help="evaluation images to attack (a seeded sample)"),
    epsilon: Optional[list[float]] = typer.Option(None, "--epsilon", help="L-infinity radius in pixel units, "
                                                                          "repeatable (default 1, 2, 4, 8 / 255)"),
    pgd_steps: int = typer.Option(10, "--pgd-steps", help="PGD gradient steps"),
    examples: int = EXAMPLES,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """White-box FGSM and PGD: robust accuracy and attack success rate at each radius."""
    from trustfm.audit.adversarial.attacks import DEFAULT_EPSILONS
    from trustfm.audit.adversarial.plugin import audit_adversarial_run

    result = audit_adversarial_run(run_dir, max_images=max_images, epsilons=tuple(epsilon or DEFAULT_EPSILONS),
                                   pgd_steps=pgd_steps, examples=examples)["adversarial"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"attacks on {result.dataset}; clean accuracy {fmt_interval(result.clean_accuracy, digits=3)}",
                 ["attack", "epsilon", "robust accuracy", "success rate"])
    for a in result.attacks:
        rows.add_row(a.attack, a.epsilon_255, fmt_interval(a.robust_accuracy, digits=3),
                     fmt_interval(a.success_rate, digits=3))
    print_rich(rows)


@audit_app.command("attributions")
def attributions(
    run_dir: Path = RUN_DIR,
    max_images: int = typer.Option(64, "--max-images", help="evaluation images to attribute (a seeded sample)"),
    examples: int = typer.Option(4, "--examples", help="images shown with their maps in the report (0: none)"),
    deletion_baseline: str = typer.Option("median", "--deletion-baseline", help="the colour deleted pixels take: "
                                          "median (the images' median colour) or black"),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Integrated gradients and saliency maps (Captum), each scored by the deletion test against a random order."""
    from trustfm.audit.attributions.plugin import audit_attributions_run

    result = audit_attributions_run(run_dir, max_images=max_images, examples=examples,
                                    deletion_baseline=deletion_baseline)["attributions"]
    if output_format is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
        return
    rows = table(f"attributions on {result.dataset} (deletion AUC: lower is more faithful)",
                 ["method", "deletion AUC", "random-order AUC", "gain"])
    for m in result.methods:
        rows.add_row(m.method, fmt_interval(m.deletion_auc, digits=3), fmt_interval(m.random_deletion_auc, digits=3),
                     fmt_interval(m.faithfulness_gain, digits=3))
    print_rich(rows)
    typer.echo(f"deleted pixels took {result.baseline}", err=True)
    for flag in result.flags():
        typer.echo(f"warning: {flag}", err=True)
