"""Drift statistics against scipy (and Evidently's PSI definition, checked on Evidently itself where installed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trustfm.monitor.drift import SortedSample, class_chi_square, ks, mmd_permutation_test, psi


def test_ks_and_chi_square_are_scipys():
    rng = np.random.default_rng(0)
    reference, current = rng.beta(5, 2, 3000), rng.beta(4, 2, 700)
    statistic, p_value = ks(SortedSample.of(reference), current)
    expected = stats.ks_2samp(reference, current)
    assert (statistic, p_value) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-12)
    chi2, p = class_chi_square([0.6, 0.4], [50, 50])
    assert (chi2, p) == pytest.approx(tuple(stats.chisquare([50, 50], [60, 40])), abs=1e-12)


def test_psi_is_zero_for_the_same_sample_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    reference = SortedSample.of(rng.normal(size=5000))
    assert psi(reference, reference.values) == pytest.approx(0.0, abs=1e-12)
    shifts = [psi(reference, rng.normal(loc, size=2000)) for loc in (0.0, 0.25, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] < 0.05 < 0.2 < shifts[-1]


def test_psi_and_ks_match_evidently():
    from monitor.evidently_reference import evidently_scores

    rng = np.random.default_rng(2)
    shifted = (rng.gamma(2.0, size=4000), rng.gamma(2.3, size=900))
    same = (rng.normal(size=3000), rng.normal(size=500))
    lengths = (rng.integers(5, 300, 2000).astype(float), rng.integers(5, 900, 400).astype(float))
    classes = (rng.integers(0, 3, 1000).astype(float), rng.integers(0, 4, 300).astype(float))  # a new class
    rare = (np.r_[np.zeros(20000), np.ones(1)], np.r_[np.zeros(100), np.full(5, 2.0)])  # a share below 0.0001
    pairs = [(*shifted, "numerical"), (*same, "numerical"), (*lengths, "numerical"), (*classes, "categorical"),
             (*rare, "categorical"), (*shifted, "ks")]
    expected = evidently_scores(pairs)
    ours = [psi(SortedSample.of(r), c) for r, c, kind in pairs[:-1]] + [ks(SortedSample.of(shifted[0]), shifted[1])[1]]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mmd_finds_a_shift_and_not_a_resample():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(300, 16))
    _, p_same = mmd_permutation_test(reference, rng.normal(size=(200, 16)), seed=0)
    _, p_shifted = mmd_permutation_test(reference, rng.normal(0.4, size=(200, 16)), seed=0)
    assert p_same > 0.05 and p_shifted < 0.01
