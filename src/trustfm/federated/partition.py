"""Which training rows each federated client holds: IID, Dirichlet label skew, or one client per group value.

Plain functions over label ids; every partition is a pure function of its inputs and the seed, so the server
and each client (possibly in other processes) derive the same rows.
"""

from __future__ import annotations

import numpy as np

from trustfm.errors import ConfigError, DataError

MIN_CLIENT_ROWS = 2  # one row to train on and one to evaluate on
DIRICHLET_TRIES = 100


def partition_rows(labels: np.ndarray, *, clients: int, method: str = "iid", alpha: float = 0.5,
                   column: list[str] | None = None, seed: int = 0) -> list[np.ndarray]:
    """Row positions (sorted int64 arrays) of each client, ``clients`` of them, disjoint, covering every row.

    - ``iid``: a random permutation cut into near-equal parts.
    - ``dirichlet``: for each class, client shares drawn from Dirichlet(``alpha``) (Hsu et al. 2019); small
      ``alpha`` gives each client few classes. Redrawn until every client has at least two rows.
    - ``column``: one client per distinct value of ``column`` (a group column's values, one per row), in sorted
      value order; ``clients`` must equal the number of values.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < clients * MIN_CLIENT_ROWS:
        raise DataError(f"federated.clients: {clients} clients need at least {clients * MIN_CLIENT_ROWS} training "
                        f"rows ({MIN_CLIENT_ROWS} each: one to train on, one to evaluate on); the training split "
                        f"has {n}")
    rng = np.random.default_rng(seed)
    if method == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(n), clients)]
    if method == "dirichlet":
        if not alpha > 0:
            raise ConfigError(f"federated.partition.alpha must be greater than 0, not {alpha}")
        return _dirichlet(labels, clients, alpha, rng)
    if method == "column":
        if column is None or len(column) != n:
            raise ConfigError("federated.partition.method: column needs federated.partition.column, one of "
                              "data.group_columns")
        values = np.asarray(column, dtype=object)
        distinct = sorted(set(values.tolist()))
        if len(distinct) != clients:
            shown = ", ".join(map(repr, distinct[:8])) + (", ..." if len(distinct) > 8 else "")
            raise ConfigError(f"federated.clients is {clients}, but the partition column has {len(distinct)} "
                              f"distinct values ({shown}): one client per value")
        parts = [np.flatnonzero(values == v) for v in distinct]
        small = [str(v) for v, p in zip(distinct, parts) if len(p) < MIN_CLIENT_ROWS]
        if small:
            raise DataError(f"federated.partition.column: value(s) {', '.join(small)} have fewer than "
                            f"{MIN_CLIENT_ROWS} training rows")
        return parts
    raise ConfigError(f"federated.partition.method must be iid, dirichlet or column, not {method!r}")


def _dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(labels)
    for _ in range(DIRICHLET_TRIES):
        owner = np.empty(len(labels), dtype=np.int64)
        for c in classes:
            rows = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
            for client, part in enumerate(np.split(rows, cuts)):
                owner[part] = client
        sizes = np.bincount(owner, minlength=clients)
        if sizes.min() >= MIN_CLIENT_ROWS:
            return [np.flatnonzero(owner == k) for k in range(clients)]
    raise DataError(f"federated.partition: Dirichlet(alpha={alpha}) left a client with fewer than "
                    f"{MIN_CLIENT_ROWS} rows in {DIRICHLET_TRIES} draws; raise alpha or use fewer clients")


def split_holdout(rows: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A client's rows as (train, holdout): ``share`` of them (at least one, at most all but one) held out for the
    client's own evaluation."""
    rows = np.random.default_rng(seed).permutation(rows)
    k = int(round(len(rows) * share))
    k = min(max(k, 1), len(rows) - 1)
    return np.sort(rows[k:]), np.sort(rows[:k])
