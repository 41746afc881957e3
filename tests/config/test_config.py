from pathlib import Path

import pytest

from trustfm.config import RunConfig, dump_config, load_config, parse_override
from trustfm.errors import ConfigError


def test_unknown_key_names_its_path_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "train.epoch" in message and "unknown key" in message and "epochs" in message


def test_nested_unknown_key_and_bad_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  on_problem:\n    empty_txt: drop\ntrain:\n  batch_size: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "data.on_problem.empty_txt: unknown key" in message
    assert "train.batch_size" in message


def test_overrides_parse_yaml_values_and_set_nested_keys():
    assert parse_override("train.epochs=2") == ("train.epochs", 2)
    assert parse_override("data.group_columns=[a, b]") == ("data.group_columns", ["a", "b"])
    config = load_config(None, {"train.learning_rate": 3e-5, "model.pooling": "cls"})
    assert config.train.learning_rate == 3e-5 and config.model.pooling == "cls"
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_relative_data_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("data:\n  train: data.csv\n")
    config = load_config(path)
    assert config.data.train == (tmp_path / "sub" / "data.csv").resolve()


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, {"seed": 7, "data.train": "x.csv"})
    dump_config(config, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again == config
    assert isinstance(RunConfig().train.epochs, int)


def test_an_efficientnet_run_defaults_to_its_own_learning_rate_unless_one_is_given(tmp_path):
    image = {"data.train": "x.csv", "data.modality": "image"}
    assert load_config(None, image).train.learning_rate == 1e-3
    assert load_config(None, {**image, "train.learning_rate": 2e-4}).train.learning_rate == 2e-4
    assert load_config(None, {"data.train": "x.csv"}).train.learning_rate == 2e-4
    dump_config(load_config(None, image), tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").train.learning_rate == 1e-3


def test_split_fractions_must_leave_training_rows():
    with pytest.raises(ConfigError):
        load_config(None, {"data.split.validation": 0.5, "data.split.test": 0.45})


def test_a_key_given_twice_and_a_seed_out_of_range_are_config_errors(tmp_path):
    from conftest import run_cli

    twice = tmp_path / "run.yaml"
    twice.write_text("train:\n  epochs: 2\ndata:\n  train: x.csv\ntrain:\n  epochs: 3\n")
    result = run_cli(["train", twice])
    assert result.returncode == 2 and "key 'train' appears twice (lines 1 and 5)" in result.stderr
    from trustfm.report.policy import load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - accuracy >= 0.5\nrules:\n  - accuracy >= 0.9\n")
    with pytest.raises(ConfigError, match="key 'rules' appears twice"):
        load_policy(policy)
    big = run_cli(["train", "--data", twice, "--seed", "123456789012345678901234567890"])
    assert big.returncode == 2 and "seed" in big.stderr and "4294967295" in big.stderr
    assert "This is a bug" not in big.stderr
