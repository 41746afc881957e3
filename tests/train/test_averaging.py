"""Weight averaging (train.ema_decay): the average the loop validates, saves and ends with, and its resume."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_rows, run_cli
from trustfm.config import ModelConfig, load_config
from trustfm.pipeline import train_and_evaluate
from trustfm.runs import read_json
from trustfm.train import Callback, FineTuner
from trustfm.train.averaging import WeightAveraging

DECAY = 0.8


class Trajectory(Callback):
    """The trained weights after every optimizer step, and what the model holds when each epoch ends."""

    def __init__(self, stop_after_epoch: int | None = None):
        self.steps: list[list[torch.Tensor]] = []
        self.at_epoch_end: list[list[torch.Tensor]] = []
        self.stop_after_epoch = stop_after_epoch

    def weights(self):
        return [p.detach().clone() for p in self.parameters]

    def on_fit_start(self, trainer):
        self.parameters = [p for g in trainer.optimizer.param_groups for p in g["params"]]
        self.start = self.weights()

    def on_step_end(self, trainer, record):
        self.steps.append(self.weights())

    def on_epoch_end(self, trainer, record):
        self.at_epoch_end.append(self.weights())
        if record["epoch"] == self.stop_after_epoch:
            trainer.should_stop = True  # as if killed after this epoch's checkpoint


def _expected_average(start, steps, decay=DECAY):
    average = [w.clone() for w in start]
    for t, weights in enumerate(steps, start=1):
        d = min(decay, (1 + t) / (10 + t))
        average = [d * a + (1 - d) * w for a, w in zip(average, weights)]
    return average


def _fit(tiny_config, callbacks, *, epochs=2, checkpoint_dir=None, resume=False, save_best=lambda m: None):
    config = load_config(None, {**tiny_config, "train.epochs": epochs, "train.early_stopping": None,
                                "train.num_threads": 1})
    torch.manual_seed(0)
    from trustfm.data.batching import encode_texts
    from trustfm.models import build_classifier

    model, tokenizer = build_classifier(ModelConfig(name_or_path=tiny_config["model.name_or_path"]), ["neg", "pos"])
    rows = make_rows(64)
    encoded = encode_texts(tokenizer, [r["text"] for r in rows], 32)
    labels = np.array([0 if r["label"] == "neg" else 1 for r in rows])
    epoch_scores = iter(range(100))  # every validation improves, so every epoch's weights are saved
    FineTuner(config.train, seed=0, callbacks=callbacks, show_progress=False).fit(
        model, encoded, labels, encoded, labels, pad_id=0, checkpoint_dir=checkpoint_dir, resume=resume,
        validation_metrics=lambda y, p: {"macro_f1": float(next(epoch_scores))},
        save_best=save_best,
    )
    return model


def test_validation_saving_and_the_final_model_use_the_average_while_training_goes_on_from_the_raw_weights(
        tiny_config):
    trajectory, saved = Trajectory(), []
    _fit(tiny_config, [trajectory, WeightAveraging(DECAY)],
                 save_best=lambda m: saved.append(trajectory.weights()))
    steps_per_epoch = len(trajectory.steps) // 2
    after_one = _expected_average(trajectory.start, trajectory.steps[:steps_per_epoch])
    after_two = _expected_average(trajectory.start, trajectory.steps)
    # saved at each epoch's validation: the average, not the raw weights (which differ from it)
    for saved_weights, expected, raw in ((saved[0], after_one, trajectory.steps[steps_per_epoch - 1]),
                                         (saved[1], after_two, trajectory.steps[-1])):
        assert all(torch.allclose(s, e, atol=1e-6) for s, e in zip(saved_weights, expected))
        assert max(float((s - r).abs().max()) for s, r in zip(saved_weights, raw)) > 1e-4
    # after validation the raw weights are back: epoch 1 ends holding its last step's weights
    assert all(torch.equal(a, b) for a, b in zip(trajectory.at_epoch_end[0], trajectory.steps[steps_per_epoch - 1]))
    # the model left in memory is the final average
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(trajectory.parameters, after_two))


def test_a_resumed_run_averages_exactly_like_an_uninterrupted_one(tiny_config, tmp_path):
    straight = _fit(tiny_config, [WeightAveraging(DECAY)], checkpoint_dir=tmp_path / "straight")
    _fit(tiny_config, [Trajectory(stop_after_epoch=1), WeightAveraging(DECAY)], checkpoint_dir=tmp_path / "resumed")
    resumed = _fit(tiny_config, [Trajectory(), WeightAveraging(DECAY)], checkpoint_dir=tmp_path / "resumed",
                   resume=True)
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))


def test_a_dp_run_with_averaging_records_it_and_federated_runs_refuse_it(tiny_config):
    paths = train_and_evaluate(load_config(None, {**tiny_config, "train.epochs": 1, "train.ema_decay": 0.9,
                                                  "privacy.dp": {"epsilon": 8.0, "trainable": "top_layers"},
                                                  "privacy.ledger": str(Path(tiny_config["output_dir"]).parent /
                                                                        "ledger.jsonl")}),
                               show_progress=False)
    record = read_json(paths.run_info)
    assert record["weight_averaging"] == {"method": "ema", "decay": 0.9, "steps_averaged": record["training"]["steps"]}
    assert run_cli(["report", str(paths.root)]).returncode == 0
    assert "moving average over the steps (EMA, decay 0.9)" in (paths.root / "model_card.md").read_text()
    from trustfm.errors import ConfigError

    with pytest.raises(ConfigError, match="train.ema_decay cannot be used with federated"):
        load_config(None, {**tiny_config, "train.ema_decay": 0.9, "federated": {"clients": 2}})
