"""The privacy cost of a DP search: Papernot and Steinke's bound, checked against Google's dp-accounting, which
implements it (``RepeatAndSelectDpEvent``); the secret trial count; what a DP search refuses."""

import random

import numpy as np
import pytest

from trustfm.errors import ConfigError
from trustfm.tune.privacy import (
    draw_trials,
    dp_sgd_rdp,
    expected_trials,
    gamma_for_mean,
    plan_tuning_privacy,
    rdp_to_epsilon,
    tuning_rdp,
)


def _orders():
    from opacus.accountants import RDPAccountant

    return np.asarray(RDPAccountant.DEFAULT_ALPHAS, dtype=np.float64)


@pytest.mark.parametrize("eta", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("mean", [3, 10, 40])
def test_search_epsilon_equals_dp_accounting_repeat_and_select(eta, mean):
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant

    orders = _orders()
    trial_rdp, trial = dp_sgd_rdp(n_train=4000, batch_size=32, epochs=3, epsilon=1.0, delta=1e-5, accountant="rdp",
                                  orders=orders)
    ours = tuning_rdp(trial_rdp, orders, eta, gamma_for_mean(eta, mean))
    # the reference composes its own RDP of the same DP-SGD run (Poisson-sampled Gaussian, same noise and steps)
    reference = rdp_privacy_accountant.RdpAccountant(orders=list(orders))
    reference.compose(dp_event.RepeatAndSelectDpEvent(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(trial["sample_rate"], dp_event.GaussianDpEvent(trial["noise_multiplier"])),
        trial["steps"]), mean, eta))
    assert rdp_to_epsilon(ours, orders, 1e-5)[0] == pytest.approx(reference.get_epsilon(1e-5), rel=1e-6)
    reference_curve = rdp_privacy_accountant._compute_rdp_repeat_and_select(orders, trial_rdp, mean, eta)
    np.testing.assert_allclose(ours, reference_curve, rtol=1e-8, atol=1e-8)
    # the search costs more than one trial, and more the more trials it expects
    assert rdp_to_epsilon(ours, orders, 1e-5)[0] > rdp_to_epsilon(trial_rdp, orders, 1e-5)[0]


def test_trial_count_distribution_has_the_planned_mean():
    rng = random.Random(0)
    for eta, mean in ((0.0, 10), (1.0, 10), (2.0, 5)):
        gamma = gamma_for_mean(eta, mean)
        assert expected_trials(eta, gamma) == pytest.approx(mean, rel=1e-6)
        draws = [draw_trials(eta, gamma, rng) for _ in range(20000)]
        assert min(draws) >= 1 and np.mean(draws) == pytest.approx(mean, rel=0.05)
    assert draw_trials(1.0, 0.5) >= 1  # from the operating system's randomness by default
    with pytest.raises(ConfigError, match="at least 2"):
        gamma_for_mean(0.0, 1)


def _dp_config(**tune):
    from trustfm.config import load_config

    return load_config(None, {"output_dir": "/tmp/unused", "privacy.dp.epsilon": 2.0,
                              "tune": {"space": {"train.learning_rate": {"log_uniform": [1e-4, 1e-2]}},
                                       "sampler": "random", "pruner": "none", "trials": 8, **tune}})


def test_plan_takes_the_costliest_accounting_setting_and_refuses_what_the_theorem_does_not_cover():
    from trustfm.tune.space import parse_space

    config = _dp_config(space={"train.learning_rate": {"log_uniform": [1e-4, 1e-2]},
                               "train.batch_size": {"choice": [16, 64]}, "train.epochs": {"int": [1, 2]}})
    plan = plan_tuning_privacy(config, parse_space(config.tune.space, config), n_train=2000)
    assert plan.settings == 4 and plan.expected_trials == pytest.approx(8)
    # every setting is calibrated to the same target epsilon 2; the pointwise maximum of their RDP curves bounds any
    # one trial a little above it (the settings' best orders differ), and the search above that
    assert 2.0 < plan.trial_epsilon < 2.3 and plan.epsilon > plan.trial_epsilon
    refusals = [({"sampler": "tpe"}, "a DP search needs sampler: random"),
                ({"pruner": "median"}, "a DP search needs pruner: none"),
                ({"space": {"privacy.dp.epsilon": {"uniform": [1, 4]}}}, "must take finitely many values"),
                ({"space": {"data.max_length": {"choice": [32, 64]}}}, "cannot vary the data")]
    for tune, message in refusals:
        config = _dp_config(**tune)
        with pytest.raises(ConfigError, match=message):
            plan_tuning_privacy(config, parse_space(config.tune.space, config), n_train=2000)
