"""Every registered audit through the same checks, in the spirit of scikit-learn's ``check_estimator``.

On one tiny run: the audit says whether it applies; it runs on a shared
:class:`AuditContext`; each result it writes has a declared ``kind``, survives a
JSON round trip unchanged, and gives finite metric names that are the same when
read back from the file; and the report renders every kind in its own section.
"""

from __future__ import annotations

import json
import math

import pytest

from trustfm.audit.context import AuditContext
from trustfm.audit.registry import registered_audits
from trustfm.config import load_config
from trustfm.errors import ConfigError
from trustfm.pipeline import train_and_evaluate
from trustfm.report.build import REPORT_KINDS, audit_sections
from trustfm.results import parse_result


@pytest.fixture(scope="module")
def image_runs(image_run, tmp_path_factory):
    """The image run and the options its audits need (a folder of digits as out-of-distribution images)."""
    from trustfm.data.image_datasets import write_digits

    digits = write_digits(tmp_path_factory.mktemp("digits") / "digits")
    options = {"ood": {"ood_data": digits}, "membership": {"max_rows": 30}, "corruption": {"max_images": 20},
               "adversarial": {"max_images": 10, "pgd_steps": 3}, "attributions": {"max_images": 6}}
    return image_run, options


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tiny_data, tmp_path_factory):
    """The audited run, a second run on the same split (an ensemble member), and the options audits need."""
    root = tmp_path_factory.mktemp("conformance")
    base = {
        "data.train": str(tiny_data), "data.id_column": "id", "data.group_columns": ["group"],
        "data.max_length": 32, "model.name_or_path": str(tiny_model_dir), "train.epochs": 2,
        "train.batch_size": 16, "train.learning_rate": 3e-3, "evaluate.bootstrap_samples": 50,
        "data.split.seed": 1,
    }
    # with canaries, so that the canary audit has something to audit
    run = train_and_evaluate(load_config(None, {**base, "output_dir": str(root / "run"), "privacy.audit.canaries": 100}),
                             show_progress=False).root
    member = train_and_evaluate(load_config(None, {**base, "seed": 7, "output_dir": str(root / "member")}),
                                show_progress=False).root
    ood = root / "ood.csv"
    ood.write_text("text\n" + "\n".join(f"quarterly revenue rose {i} percent in region {i % 7}" for i in range(60)),
                   encoding="utf-8")
    rules = root / "rules.yaml"
    rules.write_text("rules:\n  - name: unsure\n    when: {confidence_below: 0.6}\n    then: abstain\n", encoding="utf-8")
    options = {
        "ood": {"ood_data": ood},
        "output_rules": {"rules": rules},
        "ensemble": {"members": [member], "attack_texts": 10},
        "membership": {"max_rows": 60},
        "explanations": {"faithfulness_texts": 4, "global_texts": 10, "examples": 2},
        "robustness": {"max_texts": 40},
        "attacks": {"max_texts": 10},
    }
    return run, options


def test_every_registered_audit_conforms(runs, image_runs):
    audits = registered_audits()
    assert {"performance", "fairness", "explanations", "robustness", "attacks", "ood", "output_rules", "ensemble",
            "membership", "data_quality", "corruption", "adversarial", "attributions", "privacy_canaries"} <= set(audits)
    contexts = {"text": (AuditContext(runs[0]), runs[1]), "image": (AuditContext(image_runs[0]), image_runs[1])}
    image_model = contexts["image"][0].predictor.model
    weights = {k: v.clone() for k, v in image_model.state_dict().items()}
    for name, spec in audits.items():
        assert spec.modalities and set(spec.modalities) <= set(contexts), f"{name}: unknown modalities"
        for modality, (ctx, options) in contexts.items():
            if modality in spec.modalities:
                _conforms(name, spec, ctx, options)
            else:  # refused with one line that names the audits that do apply
                assert spec.reason_not_applicable(ctx, {})
                with pytest.raises(ConfigError, match=f"audit {name} audits .* models; .*audits that apply: "):
                    spec.run(ctx, **options.get(name, {}))
    # the image audits attack, perturb and attribute the shared model: none may change it (the text side is checked
    # with its data in test_audits_leave_the_shared_context_as_they_found_it)
    after = image_model.state_dict()
    assert all((after[k] == v).all() for k, v in weights.items()), "an audit changed the shared model's weights"
    assert not image_model.training


def _conforms(name, spec, ctx, options) -> None:
    """One audit through the checks on one run."""
    assert spec.description and spec.results, f"{name}: registers no description or result models"
    declared = {model.model_fields["kind"].default for model in spec.results}
    reason = spec.reason_not_applicable(ctx, {})
    assert reason is None or (isinstance(reason, str) and reason), f"{name}: why_not_applicable must be None or a reason"
    written = spec.run(ctx, **options.get(name, {}))
    assert written, f"{name} wrote no result"
    for stem, result in written.items():
        assert result.kind in declared, f"{name}: wrote kind {result.kind!r}, declares {declared}"
        on_disk = json.loads(ctx.paths.result(stem).read_text(encoding="utf-8"))
        assert on_disk["kind"] == result.kind
        again = parse_result(on_disk, source=stem)
        # compared as JSON: an undefined number (NaN, a gap between groups too small) is never equal to itself
        assert again.model_dump_json() == type(result).model_validate(json.loads(result.model_dump_json())
                                                                      ).model_dump_json(), f"{stem}: round trip"
        metrics = result.metrics()
        assert all(isinstance(k, str) and k and not k.startswith(".") for k in metrics), f"{stem}: metric names"
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), f"{stem}: metric values"
        assert again.metrics() == metrics, f"{stem}: metrics differ when read back from the file"


def test_report_renders_every_kind_in_its_own_section(runs):
    from trustfm.audit.run_all import run_all_audits
    from trustfm.report import build_report

    run, _ = runs
    run_all_audits(run)
    html, data = build_report(run)
    report = json.loads(data.read_text(encoding="utf-8"))
    kinds = {doc["kind"] for doc in report["results"].values()}
    rendered = {*REPORT_KINDS, *audit_sections()[1]}
    assert kinds <= rendered, f"kinds without a report section: {kinds - rendered}"
    page = html.read_text(encoding="utf-8")
    assert 'class="extra-result"' not in page
    for section in ("fairness", "explanations", "robustness", "attacks", "ood", "output-rules", "ensemble", "membership",
                    "data-quality", "privacy-canaries"):
        assert f'id="{section}' in page, f"no {section} section in the report"


def test_the_image_report_renders_every_kind_with_its_images(image_runs):
    from trustfm.audit.run_all import run_all_audits
    from trustfm.report import build_report

    run, options = image_runs
    run_all_audits(run, options=options)
    html, data = build_report(run)
    kinds = {doc["kind"] for doc in json.loads(data.read_text(encoding="utf-8"))["results"].values()}
    assert {"corruption", "adversarial", "attributions", "fairness", "membership", "ood"} <= kinds
    assert kinds <= {*REPORT_KINDS, *audit_sections()[1]}
    page = html.read_text(encoding="utf-8")
    for section in ("corruption", "adversarial", "attributions", "fairness", "membership", "ood"):
        assert f'id="{section}' in page, f"no {section} section in the image report"
    assert page.count('src="data:image/png;base64,') >= 10


def test_a_result_without_kind_is_refused_with_its_file_name(tmp_path):
    with pytest.raises(ConfigError, match="results/old.json: no 'kind'"):
        parse_result({"accuracy": 0.9}, source="results/old.json")
    with pytest.raises(ConfigError, match="unknown result kind 'nope'"):
        parse_result({"kind": "nope"}, source="x")


def test_audits_leave_the_shared_context_as_they_found_it(runs):
    run, options = runs
    ctx = AuditContext(run)
    # without group columns the fairness audit groups texts by identity mentions: a column it must not add in place
    ctx.config = ctx.config.model_copy(update={"data": ctx.config.data.model_copy(update={"group_columns": []})})
    before = {split: (list(getattr(ctx.data, split).texts), dict(getattr(ctx.data, split).groups))
              for split in ("train", "validation", "test")}
    weights = {k: v.clone() for k, v in ctx.predictor.model.state_dict().items()}
    for name, spec in registered_audits().items():
        if "text" in spec.modalities:
            spec.run(ctx, **options.get(name, {}))
    for split, (texts, groups) in before.items():
        part = getattr(ctx.data, split)
        assert part.texts == texts and part.groups.keys() == groups.keys(), f"{split} split changed in place"
    after = ctx.predictor.model.state_dict()
    assert all((after[k] == v).all() for k, v in weights.items()), "an audit changed the shared model's weights"
    assert not ctx.predictor.model.training

