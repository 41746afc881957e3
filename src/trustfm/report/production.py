"""The production re-audit's own page: ``RUN_DIR/monitoring/reaudit.html`` beside the training report.

``trustfm monitor --reaudit`` re-runs the performance and fairness audits on the answers that got a true label
through ``/v1/feedback``; this renders that result (it computes nothing) next to the training-time numbers, with
the confusion matrix and reliability diagram of the production answers.
"""

from __future__ import annotations

from pathlib import Path

from trustfm.fileio import write_json_atomic, write_text_atomic
from trustfm.runs import existing_run, now_iso

REAUDIT_HTML = "reaudit.html"
REAUDIT_JSON = "reaudit.json"


def build_reaudit_report(run_dir: str | Path, reaudit: dict, *, source: str) -> Path:
    """Write ``monitoring/reaudit.json`` (the re-audit document, with when and from which log) and
    ``monitoring/reaudit.html``; returns the HTML's path. ``reaudit``: a ``Reaudit`` document (n, performance,
    fairness, training, note)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from trustfm.report import plots

    paths = existing_run(run_dir)
    folder = paths.root / "monitoring"
    document = {**reaudit, "run_dir": str(paths.root), "source": source, "written": now_iso()}
    performance = reaudit["performance"]
    figures = {"confusion": plots.confusion_matrix(performance["confusion_matrix"], performance["label_names"]),
               "reliability": plots.reliability_diagram(performance["calibration_bins"],
                                                        performance["expected_calibration_error"])}
    env = Environment(loader=PackageLoader("trustfm.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("reaudit.html.j2").render(r=document, figures=figures)
    write_json_atomic(folder / REAUDIT_JSON, document)
    write_text_atomic(folder / REAUDIT_HTML, html)
    return folder / REAUDIT_HTML
