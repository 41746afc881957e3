"""The search space, objectives and selection rules: parsed and checked before any trial runs."""

import pytest

from trustfm.config import load_config
from trustfm.errors import ConfigError
from trustfm.tune.objectives import audits_needed, parse_selection
from trustfm.tune.space import grid_size, parse_space

BASE = load_config(None, {"output_dir": "/tmp/unused"})


def test_dimensions_suggest_what_optuna_samples_and_grid_enumerates():
    import optuna

    dims = parse_space({"train.learning_rate": {"log_uniform": [1e-5, 1e-3]},
                        "train.batch_size": {"choice": [16, 32, 64]}, "train.epochs": {"int": [1, 3]},
                        "train.warmup_ratio": {"uniform": [0.0, 0.2]}, "data.max_length": {"log_int": [16, 128]}},
                       BASE)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    values = {d.key: d.suggest(trial) for d in dims}
    assert 1e-5 <= values["train.learning_rate"] <= 1e-3 and values["train.batch_size"] in (16, 32, 64)
    assert isinstance(values["train.epochs"], int) and 1 <= values["train.epochs"] <= 3
    assert isinstance(values["data.max_length"], int) and 0.0 <= values["train.warmup_ratio"] <= 0.2
    grid = parse_space({"train.batch_size": {"choice": [16, 32]}, "train.epochs": {"int": [1, 3]}}, BASE)
    assert grid_size(grid) == 6
    with pytest.raises(ConfigError, match="sampler grid needs choice or int values"):
        grid_size(dims)


@pytest.mark.parametrize("space, message", [
    ({"train.learning_rat": {"log_uniform": [1e-5, 1e-3]}},
     "tune.space.train.learning_rat: unknown config key (did you mean train.learning_rate"),
    ({"train.batch_size": {"choice": []}}, "tune.space.train.batch_size: choice needs a non-empty list"),
    ({"train.batch_size": {"choice": [16, 16]}}, "choice lists a value twice"),
    ({"train.learning_rate": {"log_uniform": [0, 1e-3]}}, "log_uniform needs low > 0"),
    ({"train.learning_rate": {"uniform": [1e-3, 1e-5]}}, "uniform needs low < high"),
    ({"train.epochs": {"int": [1.5, 3]}}, "int needs whole numbers"),
    ({"train.epochs": {"normal": [1, 3]}}, "give one distribution, one of log_uniform"),
    ({"train.batch_size": {"choice": [16, 0]}}, "tune.space.train.batch_size value 0: train.batch_size: Input should "
                                                "be greater than or equal to 1"),
    ({"output_dir": {"choice": ["a", "b"]}}, "tune.space.output_dir: cannot be searched"),
    ({}, "tune.space is empty"),
])
def test_a_bad_space_is_one_line_naming_the_key(space, message):
    with pytest.raises(ConfigError) as caught:
        parse_space(space, BASE)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_selection_rules_and_the_audits_a_search_reads():
    best = parse_selection("best")
    assert best.objective is None and best.rules == ()
    rule = parse_selection("max validation.macro_f1 where fairness.max_fpr_gap <= 0.1 and latency.p95_ms < 20")
    assert rule.objective.metric == "validation.macro_f1" and rule.objective.direction == "maximize"
    assert [r.text() for r in rule.rules] == ["fairness.max_fpr_gap <= 0.1", "latency.p95_ms < 20"]
    assert parse_selection("min latency.p95_ms").objective.direction == "minimize"
    with pytest.raises(ConfigError, match="write 'best', 'best where RULE', or 'max|min METRIC"):
        parse_selection("the fastest one")
    registered = ["performance", "fairness", "robustness"]
    needed = audits_needed(["validation.macro_f1", "fairness.max_fpr_gap", "robustness.worst_flip_rate",
                            "latency.p95_ms"], {"robustness": {"max_texts": 50}}, registered)
    assert needed == {"robustness": {"max_texts": 50}, "fairness": {}}
    with pytest.raises(ConfigError, match="no trial metric or audit is named 'fairnes'"):
        audits_needed(["fairnes.max_fpr_gap"], {}, registered)
    with pytest.raises(ConfigError, match="tune.audits: unknown audit 'robustnes' \\(did you mean robustness"):
        audits_needed([], {"robustnes": {}}, registered)
