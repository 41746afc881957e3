"""The privacy cost of a whole DP search, not only of the run it returns.

Every trial trains on the same private rows, so a search of K trials that
reports the best leaks more than one run. Papernot and Steinke ("Hyperparameter
tuning with Rényi differential privacy", ICLR 2022, Theorem 2) bound it when the
number of trials K is itself random, drawn from a truncated negative binomial
distribution D(eta, gamma) independently of the data and kept secret, and each
trial is the same randomised algorithm Q (random search: draw hyper-parameters,
train with DP-SGD) satisfying (lambda, eps(lambda))-RDP. Returning the best of
the K outputs is then (lambda, eps'(lambda))-RDP with

    eps'(lambda) = eps(lambda) + min over lambda_hat >= 1 of
                   [(1 + eta)(1 - 1/lambda_hat) eps(lambda_hat) + (1 + eta) log(1/gamma) / lambda_hat]
                   + log E[K] / (lambda - 1),

converted to (epsilon, delta) the way Opacus converts DP-SGD's own RDP curve.

``eps(lambda)`` of one trial is the pointwise maximum over every setting of the
searched keys that change the accounting (batch size, epochs, the DP target):
each is the RDP curve of the noise DP-SGD calibrates for that setting. The
theorem holds for trials that do not depend on one another, so a DP search uses
random sampling and no pruning; and it covers the released output only: the
chosen model and its scores, not the table of every trial.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import numpy as np

from trustfm.errors import ConfigError

# searched keys that change one trial's privacy cost; each must take finitely many values in a DP search
ACCOUNTING_KEYS = ("train.batch_size", "train.epochs", "privacy.dp.epsilon", "privacy.dp.delta",
                   "privacy.dp.accountant")
# searched keys that do not change it (clipping bound, trainable parameters): any distribution
NEUTRAL_PRIVACY_KEYS = ("privacy.dp.max_grad_norm", "privacy.dp.trainable", "privacy.dp.top_layers",
                        "privacy.dp.lora_rank", "privacy.dp.lora_alpha", "privacy.dp.clipping")
MAX_SETTINGS = 4096


def expected_trials(eta: float, gamma: float) -> float:
    """E[K] of the truncated negative binomial D(eta, gamma) on {1, 2, ...}."""
    if eta == 0:
        return (1 / gamma - 1) / math.log(1 / gamma)
    return eta * (1 - gamma) / (gamma * (1 - gamma ** eta))


def gamma_for_mean(eta: float, mean: float) -> float:
    """The gamma in (0, 1) for which D(eta, gamma) has mean ``mean`` (> 1); E[K] falls as gamma rises."""
    if mean <= 1:
        raise ConfigError("tune.trials: a DP search draws its number of trials at random, with this mean; it must "
                          "be at least 2")
    low, high = 1e-12, 1 - 1e-12
    for _ in range(200):
        mid = (low + high) / 2
        if expected_trials(eta, mid) > mean:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def draw_trials(eta: float, gamma: float, rng: random.Random | None = None) -> int:
    """One draw of K ~ D(eta, gamma) by inverting its distribution function; ``rng`` defaults to the operating
    system's randomness, since the guarantee needs K kept secret."""
    rng = rng or random.SystemRandom()
    u = rng.random()
    # P(1), then P(k + 1) = P(k) (1 - gamma)(k + eta)/(k + 1)
    p = (1 - gamma) / math.log(1 / gamma) if eta == 0 else (1 - gamma) * eta / (gamma ** -eta - 1)
    k, total = 1, p
    while total < u and p > 0:
        p *= (1 - gamma) * (k + eta) / (k + 1)
        k += 1
        total += p
    return k


def tuning_rdp(trial_rdp: np.ndarray, orders: np.ndarray, eta: float, gamma: float) -> np.ndarray:
    """eps'(lambda) at each order (Theorem 2), from one trial's RDP curve ``trial_rdp`` at the same ``orders``."""
    hat_orders = np.concatenate([[1.0], orders])
    hat_rdp = np.concatenate([[0.0], trial_rdp])  # lambda_hat = 1: its eps term is multiplied by 0
    overhead = np.min((1 + eta) * (1 - 1 / hat_orders) * hat_rdp + (1 + eta) * math.log(1 / gamma) / hat_orders)
    bound = trial_rdp + overhead + math.log(expected_trials(eta, gamma)) / (orders - 1)
    # RDP is non-decreasing in the order, so a higher order's bound also holds at every lower one
    return np.minimum.accumulate(bound[::-1])[::-1]


def rdp_to_epsilon(rdp: np.ndarray, orders: np.ndarray, delta: float) -> tuple[float, float]:
    """(epsilon, best order) at ``delta``, by Opacus' conversion (the one DP-SGD runs report)."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    eps, order = get_privacy_spent(orders=list(orders), rdp=list(rdp), delta=delta)
    return float(eps), float(order)


def dp_sgd_rdp(*, n_train: int, batch_size: int, epochs: int, epsilon: float, delta: float, accountant: str,
               orders: np.ndarray) -> tuple[np.ndarray, dict]:
    """RDP curve of one DP-SGD run as :class:`~trustfm.train.privacy.DPSGD` plans it (Poisson rate one batch per
    epoch's steps, noise calibrated to (epsilon, delta) over ``epochs``), and those settings."""
    import warnings

    from opacus.accountants.analysis.rdp import compute_rdp
    from opacus.accountants.utils import get_noise_multiplier

    steps_per_epoch = math.ceil(n_train / batch_size)
    sample_rate = 1.0 / steps_per_epoch
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        noise = get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                     epochs=epochs, accountant=accountant)
    rdp = np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise, steps=steps_per_epoch * epochs,
                                 orders=list(orders)), dtype=np.float64)
    return rdp, {"noise_multiplier": noise, "sample_rate": sample_rate, "steps": steps_per_epoch * epochs}


@dataclass
class TuningPrivacy:
    """What a DP search costs, planned before its first trial."""

    method: str
    epsilon: float  # of the whole search, at delta
    delta: float
    order: float  # the RDP order that gives epsilon
    trial_epsilon: float  # a bound on any one trial's epsilon at delta (the maximum RDP curve, converted alone)
    expected_trials: float
    eta: float
    gamma: float
    settings: int  # accounting settings the trial curve is the maximum over
    n_train: int
    orders: list[float]
    trial_rdp: list[float]

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("orders", "trial_rdp")}


def plan_tuning_privacy(config, dims, *, n_train: int) -> TuningPrivacy:
    """The whole search's (epsilon, delta) for ``config`` (with ``privacy.dp`` and ``tune``) over ``dims``.

    Refuses what the theorem does not cover: an adaptive sampler, pruning, searched keys that change the data or
    take infinitely many accounting-relevant values.
    """
    from opacus.accountants import RDPAccountant

    from trustfm.config.load import with_overrides
    from trustfm.train.privacy import default_delta

    tune = config.tune
    if tune.sampler != "random":
        raise ConfigError(f"tune.sampler: {tune.sampler} chooses each trial from the scores of earlier ones, which "
                          "are computed from the private rows; a DP search needs sampler: random (its privacy cost "
                          "is accounted for independent trials)")
    if tune.pruner != "none":
        raise ConfigError("tune.pruner: pruning stops a trial by comparing it with earlier trials, so trials are no "
                          "longer independent; a DP search needs pruner: none")
    accounting = []
    for dim in dims:
        if dim.key in ACCOUNTING_KEYS:
            if dim.kind not in ("choice", "int"):
                raise ConfigError(f"tune.space.{dim.key}: in a DP search it must take finitely many values "
                                  f"({{choice: [...]}} or {{int: [lo, hi]}}) so that every trial's cost is bounded")
            accounting.append(dim)
        elif dim.key.startswith(("data.", "privacy.", "model.")) and dim.key not in NEUTRAL_PRIVACY_KEYS:
            raise ConfigError(f"tune.space.{dim.key}: a DP search cannot vary the data, the model or the privacy "
                              "set-up other than the DP target (the accounting assumes one dataset and one "
                              "mechanism); fix it in the config")
    combos = list(itertools.product(*(d.grid_values() for d in accounting)))
    if len(combos) > MAX_SETTINGS:
        raise ConfigError(f"tune.space: {len(combos)} settings of the accounting keys; at most {MAX_SETTINGS}")
    orders = np.asarray(RDPAccountant.DEFAULT_ALPHAS, dtype=np.float64)
    base_delta = config.privacy.dp.delta if config.privacy.dp.delta is not None else default_delta(n_train)
    worst = np.zeros_like(orders)
    for combo in combos:
        trial = with_overrides(config, {d.key: v for d, v in zip(accounting, combo)},
                               source="tune.space (accounting)")
        dp = trial.privacy.dp
        delta = dp.delta if dp.delta is not None else base_delta
        rdp, _ = dp_sgd_rdp(n_train=n_train, batch_size=trial.train.batch_size, epochs=trial.train.epochs,
                            epsilon=dp.epsilon, delta=delta, accountant=dp.accountant, orders=orders)
        worst = np.maximum(worst, rdp)
    eta = tune.privacy.eta
    gamma = gamma_for_mean(eta, tune.trials)
    eps, order = rdp_to_epsilon(tuning_rdp(worst, orders, eta, gamma), orders, base_delta)
    trial_eps, _ = rdp_to_epsilon(worst, orders, base_delta)
    return TuningPrivacy(
        method="Papernot & Steinke (ICLR 2022) Theorem 2: random search, trial count ~ truncated negative "
               "binomial, RDP", epsilon=eps, delta=base_delta, order=order, trial_epsilon=trial_eps,
        expected_trials=expected_trials(eta, gamma), eta=eta, gamma=gamma, settings=len(combos), n_train=n_train,
        orders=orders.tolist(), trial_rdp=worst.tolist())


def check_trial_within_plan(plan: TuningPrivacy, privacy_record: dict, steps: int, *, trial: int) -> None:
    """A finished trial's DP-SGD (its recorded noise, sampling rate and steps) must be within the planned curve."""
    from opacus.accountants.analysis.rdp import compute_rdp

    rdp = np.asarray(compute_rdp(q=privacy_record["sample_rate"], noise_multiplier=privacy_record["noise_multiplier"],
                                 steps=steps, orders=plan.orders), dtype=np.float64)
    if np.any(rdp > np.asarray(plan.trial_rdp) * (1 + 1e-6) + 1e-9):
        raise ConfigError(f"trial {trial} spent more privacy than the search planned for (its training rows or "
                          "steps differ from the plan's); the study stops")
