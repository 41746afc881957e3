"""Evidently's own numbers, computed in its environment (``make evidently`` builds ``.venv-evidently``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

PYTHON = Path(__file__).resolve().parents[2] / ".venv-evidently" / "bin" / "python"
SCRIPT = """
import json, sys
import numpy as np, pandas as pd
from evidently.legacy.calculations.stattests import ks_stat_test, psi_stat_test
from evidently.legacy.core import ColumnType
pairs = json.load(sys.stdin)
out = []
for reference, current, kind in pairs:
    column = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    test = psi_stat_test if kind != "ks" else ks_stat_test
    out.append(float(test(pd.Series(reference), pd.Series(current), column, None).drift_score))
print(json.dumps(out))
"""


def evidently_scores(pairs: list[tuple[np.ndarray, np.ndarray, str]]) -> list[float]:
    """Evidently's PSI (``numerical``/``categorical``) or KS p-value (``ks``) of each (reference, current) pair."""
    if not PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{PYTHON} is missing: make test builds it (make evidently)")
        pytest.skip("Evidently's environment is not built (make evidently)")
    payload = json.dumps([[np.asarray(r).tolist(), np.asarray(c).tolist(), kind] for r, c, kind in pairs])
    done = subprocess.run([str(PYTHON), "-c", SCRIPT], input=payload, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)
