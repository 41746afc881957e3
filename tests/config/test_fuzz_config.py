"""Property tests (Hypothesis) over the config, policy and rules loaders: a ConfigError or a valid config."""

from __future__ import annotations

import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustfm.config import load_config
from trustfm.config.load import parse_override
from trustfm.errors import TrustfmError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SECTIONS = ["data", "model", "train", "evaluate", "fairness", "robustness", "privacy", "seed", "output_dir", "x"]
KEYS = ["epochs", "batch_size", "learning_rate", "train", "format", "text_column", "dp", "epsilon", "total_epsilon",
        "on_problem", "empty_text", "too_long", "sensitive", "mitigation", "max_length", "name_or_path", "bogus"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**6, max_value=10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["nan", ".inf", "-1", "0", "error", "drop", "csv", "reweigh", "auto"]))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                     max_leaves=12)
CONFIGS = st.dictionaries(st.sampled_from(SECTIONS), TREES, max_size=5)


@FUZZ
@given(tree=CONFIGS)
def test_any_yaml_tree_loads_or_fails_with_a_config_error(tmp_path, tree):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    try:
        config = load_config(path)
    except TrustfmError:
        return
    # whatever loads is valid: no NaN or infinity slipped through a bound
    for value in _floats(config.model_dump()):
        assert math.isfinite(value)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_any_bytes_as_a_config_policy_or_rules_file_fail_cleanly(tmp_path, data):
    from trustfm.audit.output_rules.rules import load_rules
    from trustfm.report.policy import load_policy

    path = tmp_path / "file.yaml"
    path.write_bytes(data)
    for load in (load_config, load_policy, load_rules):
        try:
            load(path)
        except TrustfmError:
            pass


@FUZZ
@given(items=st.lists(st.text(max_size=30), max_size=4))
def test_any_override_strings_fail_cleanly(items):
    try:
        load_config(None, dict(parse_override(item) for item in items))
    except TrustfmError:
        pass


@FUZZ
@given(rules=st.lists(st.one_of(st.text(max_size=30), st.dictionaries(st.sampled_from(["metric", "op", "value", "use", "x"]),
                                                                      SCALARS, max_size=4), SCALARS), max_size=4),
       name=SCALARS)
def test_any_policy_file_loads_or_fails_with_a_config_error(tmp_path, rules, name):
    from trustfm.report.policy import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"name": name, "rules": rules}), encoding="utf-8")
    try:
        load_policy(path)
    except TrustfmError:
        pass


def _floats(tree):
    if isinstance(tree, float):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _floats(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _floats(value)
