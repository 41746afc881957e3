"""Client partitions: every row to exactly one client, the skew Dirichlet promises, and clear refusals."""

import numpy as np
import pytest

from trustfm.errors import ConfigError, DataError
from trustfm.federated.partition import partition_rows, split_holdout


def _check_cover(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n and len(np.unique(joined)) == n  # disjoint and complete


def test_iid_parts_are_near_equal_and_cover_every_row():
    labels = np.repeat([0, 1, 2], 100)
    parts = partition_rows(labels, clients=7, method="iid", seed=3)
    _check_cover(parts, 300)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert [p.tolist() for p in parts] == [p.tolist() for p in partition_rows(labels, clients=7, seed=3)]


def test_dirichlet_skew_grows_as_alpha_shrinks():
    labels = np.repeat([0, 1], 500)

    def mean_majority_share(alpha):
        parts = partition_rows(labels, clients=5, method="dirichlet", alpha=alpha, seed=0)
        _check_cover(parts, 1000)
        return np.mean([np.bincount(labels[p], minlength=2).max() / len(p) for p in parts])

    skewed, balanced = mean_majority_share(0.1), mean_majority_share(100.0)
    assert skewed > 0.85 and balanced < 0.6


def test_column_gives_one_client_per_value():
    labels = np.zeros(9, dtype=int)
    column = ["x", "y", "z"] * 3
    parts = partition_rows(labels, clients=3, method="column", column=column)
    assert [p.tolist() for p in parts] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ConfigError, match="3 distinct values"):
        partition_rows(labels, clients=4, method="column", column=column)


def test_bad_partitions_are_refused_with_the_reason():
    with pytest.raises(DataError, match="5 clients need at least 10 training rows.*has 6"):
        partition_rows(np.zeros(6), clients=5)
    with pytest.raises(ConfigError, match="alpha must be greater than 0"):
        partition_rows(np.zeros(60), clients=3, method="dirichlet", alpha=0.0)


def test_holdout_keeps_at_least_one_row_on_each_side():
    train, holdout = split_holdout(np.arange(2), 0.01, seed=0)
    assert len(train) == 1 and len(holdout) == 1
    train, holdout = split_holdout(np.arange(100), 0.2, seed=0)
    assert len(holdout) == 20 and not set(train) & set(holdout)
