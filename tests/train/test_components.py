"""Trust features as components: the config picks them, in a fixed order, and a new one plugs in unedited."""

from __future__ import annotations

from trustfm.config import load_config
from trustfm.runs import read_json
from trustfm.train.callbacks import Callback
from trustfm.train.components import TrustComponent, trust_components
from trustfm.train.run import train_run


def test_the_config_turns_components_on_in_a_fixed_order():
    assert trust_components(load_config(None, {})) == []
    names = [c.name for c in trust_components(load_config(None, {
        "privacy.redact": True, "privacy.dp.epsilon": 8, "fairness.mitigation": "reweigh",
        "fairness.sensitive": ["group"], "data.group_columns": ["group"], "robustness.embedding_noise": 0.01,
        "robustness.augmentation.tests": ["typos"], "train.tracking.tensorboard": True,
    }))]
    assert names == ["redaction", "perturbation_augmentation", "differential_privacy", "tracking",
                     "group_rebalancing", "robust_training"]


class HalfTheRows(TrustComponent):
    """A feature from a later stage: trains on every other row, counts steps, records itself."""

    name = "half_the_rows"

    def __init__(self):
        self.steps = 0

    def wrap_train(self, setup, train):
        keep = list(range(0, len(train), 2))
        return train.subset(keep), 0

    def callbacks(self, setup):
        component = self

        class CountSteps(Callback):
            def on_step_end(self, trainer, record):
                component.steps += 1

        return [CountSteps()]

    def after_fit(self, setup):
        setup.record.half_the_rows = {"steps": self.steps}


def test_a_new_component_plugs_into_train_run_without_editing_it(tiny_config):
    component = HalfTheRows()
    paths = train_run(load_config(None, {**tiny_config, "train.epochs": 1}), show_progress=False,
                      extra_components=[component])
    info = read_json(paths.run_info)
    assert info["half_the_rows"]["steps"] == component.steps > 0
    assert info["rows"]["train"] == 320  # 400 rows, 10% validation and 10% test held out
    batches = -(-160 // tiny_config["train.batch_size"])
    assert component.steps == batches
