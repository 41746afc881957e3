"""Image runs through the same loop and trust components as text: DP-SGD, re-weighting, adversarial training,
augmentation, resume."""

from __future__ import annotations

import json

import pytest

from conftest import image_overrides
from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate


def _train(image_data, folder, **more):
    config = load_config(None, image_overrides(image_data, folder, **{"train.epochs": 1, **more}))
    return train_and_evaluate(config, show_progress=False).root


def _epochs(run):
    return [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines() if '"validation"' in line]


def test_an_image_run_learns_and_records_what_it_started_from(image_run):
    record = json.loads((image_run / "run.json").read_text())
    assert record["rows"]["read"] == 150 and record["truncated"] == {"train": 0, "validation": 0, "test": 0,
                                                                     "holdout": 0}
    epochs = _epochs(image_run)
    assert len(epochs) == 2 and all(e["train_samples_per_second"] > 0 for e in epochs)
    performance = json.loads((image_run / "results" / "performance.json").read_text())
    assert performance["accuracy"]["value"] > 0.5  # three balanced classes: chance is a third


def test_dp_sgd_trains_the_head_of_an_image_model_within_its_budget(image_data, tmp_path):
    run = _train(image_data, tmp_path / "dp", **{"privacy.dp": {"epsilon": 4.0, "trainable": "head"}})
    privacy = json.loads((run / "results" / "privacy.json").read_text())
    assert 0 < privacy["epsilon"] <= 4.0 + 1e-6
    from safetensors.torch import load_file

    from trustfm.models.image import build_image_classifier

    trained = load_file(str(run / "model" / "classifier.safetensors"))
    start = build_image_classifier(num_labels=3, image_size=32, pretrained=True, dropout=0.2).state_dict()
    # only the head moved: the frozen backbone (and its batch-norm statistics) is the shipped one
    assert all((trained[k] == v).all() for k, v in start.items() if not k.startswith("head."))
    assert not (trained["head.weight"] == start["head.weight"]).all()


def test_reweighting_and_pgd_adversarial_training_run_on_images(image_data, tmp_path):
    run = _train(image_data, tmp_path / "fair-robust", **{
        "fairness.mitigation": "reweigh",
        "robustness.adversarial_training": {"method": "pgd", "epsilon": 4 / 255, "steps": 2}})
    record = json.loads((run / "run.json").read_text())
    assert record["fairness_mitigation"] == "reweigh"
    assert record["robust_training"]["adversarial_training"]["method"] == "pgd"
    assert _epochs(run)[0]["train_loss"] > 0


class _Interrupt(Exception):
    pass


def test_a_resumed_image_run_ends_as_an_uninterrupted_one(image_data, tmp_path):
    """Augmentation is drawn from (seed, batch rows): a run continued from its checkpoint repeats the rest."""
    from trustfm.train.callbacks import Callback
    from trustfm.train.components import TrustComponent
    from trustfm.train.run import train_run

    class StopAtEpochTwo(Callback):
        def on_epoch_start(self, trainer, epoch):
            if epoch == 2:
                raise _Interrupt

    class Stopper(TrustComponent):
        name = "stopper"

        def callbacks(self, setup):
            return [StopAtEpochTwo()]

    whole = _train(image_data, tmp_path / "whole", **{"train.epochs": 2})
    config = load_config(None, image_overrides(image_data, tmp_path / "part", **{"train.epochs": 2}))
    with pytest.raises(_Interrupt):
        train_run(config, show_progress=False, extra_components=[Stopper()])
    assert len(_epochs(tmp_path / "part")) == 1
    train_and_evaluate(load_config(tmp_path / "part" / "config.yaml"), resume=True, show_progress=False)
    resumed, straight = _epochs(tmp_path / "part"), _epochs(whole)
    assert [e["train_loss"] for e in resumed] == pytest.approx([e["train_loss"] for e in straight], rel=1e-5)
    assert resumed[-1]["validation"] == pytest.approx(straight[-1]["validation"], rel=1e-5)
