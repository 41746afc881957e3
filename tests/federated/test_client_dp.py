"""Client-level DP: the accountant agrees with Google's dp-accounting (through Flower's own accountant), and the
released mean has the sensitivity and noise the accountant assumes."""

import numpy as np
import pytest
import torch

from trustfm.federated.privacy import (
    clip_update,
    client_level_epsilon,
    default_client_delta,
    private_mean,
    privatise_local_update,
    update_norm,
)


def _flower_epsilon(*, sigma, sampled, population, rounds, delta, sampling):
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    accountant = RdpAccountant(PrivacyConfig(target_delta=delta, population_size=population,
                                             neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                             sampling_method=SamplingMethod[sampling]))
    accountant.compose(GaussianPrivacyEvent(noise_multiplier=sigma, sample_size=sampled, population_size=population),
                       count=rounds)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("sigma,rounds", [(0.8, 5), (1.0, 20), (2.0, 100)])
def test_every_client_every_round_matches_flowers_accountant(sigma, rounds):
    ours = client_level_epsilon(noise_multiplier=sigma, sample_rate=1.0, rounds=rounds, delta=1e-3)
    reference = _flower_epsilon(sigma=sigma, sampled=10, population=10, rounds=rounds, delta=1e-3,
                                sampling="NO_AMPLIFICATION")
    assert ours == pytest.approx(reference, rel=1e-6)


def test_poisson_sampled_clients_match_google_accounting_and_cost_less():
    ours = client_level_epsilon(noise_multiplier=1.2, sample_rate=0.3, rounds=30, delta=1e-3)
    reference = _flower_epsilon(sigma=1.2, sampled=3, population=10, rounds=30, delta=1e-3, sampling="POISSON")
    # Opacus and dp-accounting search different grids of Renyi orders: the bounds agree to about 1%
    assert ours == pytest.approx(reference, rel=0.02)
    assert ours < client_level_epsilon(noise_multiplier=1.2, sample_rate=1.0, rounds=30, delta=1e-3)


def test_default_delta_is_below_one_over_clients():
    assert default_client_delta(10) == 0.01 and default_client_delta(50) == 0.001


def _update(norm, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = {"a": torch.randn(50, generator=g), "b": torch.randn(3, 4, generator=g)}
    return {k: v * (norm / update_norm(u)) for k, v in u.items()}


def test_clipping_bounds_the_norm_and_leaves_small_updates_alone():
    assert update_norm(clip_update(_update(5.0), 1.0)) == pytest.approx(1.0, rel=1e-5)
    small = _update(0.5)
    assert all(torch.equal(small[k], v) for k, v in clip_update(small, 1.0).items())


def test_one_client_moves_the_private_mean_by_at_most_c_over_m_plus_noise_of_sigma_c_over_m():
    template = {"a": torch.zeros(50), "b": torch.zeros(3, 4)}
    honest = [_update(0.3, seed=s) for s in range(4)]
    sigma, c, m = 1e-9, 1.0, 5.0  # noise negligible: the sensitivity alone
    without = private_mean(honest, template=template, expected_clients=m, noise_multiplier=sigma, clipping_norm=c)
    with_big = private_mean(honest + [_update(100.0, seed=9)], template=template, expected_clients=m,
                            noise_multiplier=sigma, clipping_norm=c)
    assert update_norm({k: with_big[k] - without[k] for k in template}) == pytest.approx(c / m, rel=1e-4)
    # no client at all: the round still releases noise, of standard deviation sigma C / m
    big = {"a": torch.zeros(200_000)}
    noise = private_mean([], template=big, expected_clients=4.0, noise_multiplier=2.0, clipping_norm=1.0)["a"]
    assert float(noise.std()) == pytest.approx(2.0 * 1.0 / 4.0, rel=0.02)


def test_local_mode_noise_is_two_sigma_c_and_differs_each_call():
    update = {"a": torch.zeros(200_000)}
    first = privatise_local_update(update, noise_multiplier=0.5, clipping_norm=3.0)["a"]
    second = privatise_local_update(update, noise_multiplier=0.5, clipping_norm=3.0)["a"]
    assert float(first.std()) == pytest.approx(2 * 0.5 * 3.0, rel=0.02)
    assert not torch.equal(first, second)
    assert abs(float(np.corrcoef(first.numpy(), second.numpy())[0, 1])) < 0.01
