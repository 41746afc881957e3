"""The one-run canary audit: its bound equals jax-privacy's, it keeps a correct DP-SGD's claim, it refutes a DP-SGD
whose noise was cut, it shows a large epsilon without DP, and nothing in the run tells the draws before it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from trustfm.audit.canaries.bound import epsilon_lower_bound, p_value
from trustfm.audit.canaries.scoring import guess_plans, make_guesses
from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate

JAX_PRIVACY = Path(__file__).resolve().parents[2] / ".venv-jax-privacy" / "bin" / "python"
CLAIMED = 2.0


def _jax_privacy_bounds(cases: list[tuple[int, int, int, float, float]]) -> list[float]:
    """jax-privacy's one-run epsilon (``auditing._epsilon_one_run``) for each (m, guesses, correct, significance,
    delta), computed in its own environment (``make jax-privacy``)."""
    if not JAX_PRIVACY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{JAX_PRIVACY} is missing: make test builds it (make jax-privacy)")
        pytest.skip("jax-privacy's environment is not built (make jax-privacy)")
    script = ("import json, sys\nfrom jax_privacy.auditing import _epsilon_one_run\n"
              "print(json.dumps([_epsilon_one_run(0.0, m, g, c, s, d) for m, g, c, s, d in json.load(sys.stdin)]))")
    done = subprocess.run([str(JAX_PRIVACY), "-c", script], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_bound_equals_jax_privacy_one_run_audit():
    cases = [(1000, 100, 100, 0.05 / 8, 1e-6), (1000, 200, 200, 0.05 / 8, 1e-4), (1000, 200, 181, 0.05 / 8, 1e-6),
             (200, 100, 70, 0.05, 1e-5), (500, 500, 300, 0.01, 0.0), (100, 20, 12, 0.05, 1e-5),
             (5000, 1000, 900, 0.05 / 8, 1e-8)]
    ours = [epsilon_lower_bound(canaries=m, guesses=g, correct=c, significance=s, delta=d) for m, g, c, s, d in cases]
    np.testing.assert_allclose(ours, _jax_privacy_bounds(cases), atol=1e-5)
    assert ours[5] == 0.0  # 12 right of 20 is chance: no epsilon is refuted


def test_the_p_value_is_the_binomial_tail_without_delta():
    from scipy.stats import binom

    # at epsilon 0 each guess is a fair coin
    assert p_value(canaries=100, guesses=40, correct=30, epsilon=0.0, delta=0.0) == pytest.approx(binom.sf(29, 40, 0.5))
    # all right out of r, delta 0: the bound solves q^r = significance in closed form
    q = 0.01 ** (1 / 60)
    assert epsilon_lower_bound(canaries=60, guesses=60, correct=60, delta=0.0, significance=0.01) == pytest.approx(
        np.log(q / (1 - q)), abs=1e-5)


def test_guess_plans_are_fixed_by_the_scores_alone():
    scores = np.array([0.3, -1.0, 2.0, 0.1, 5.0, -0.2])
    assert make_guesses(scores, 2, 1).tolist() == [0, -1, 1, 0, 1, 0]
    assert make_guesses(scores, 1, 0).tolist() == [0, 0, 0, 0, 1, 0]
    plans = guess_plans(1000)
    assert (10, 0) in plans and (500, 500) in plans and len(plans) == len(set(plans))


def _canary_run(tiny_config, tmp_path: Path, name: str, **more) -> Path:
    # one thread: what the tiny model learns of the canaries must not depend on how busy the machine is
    overrides = {**tiny_config, "train.early_stopping": None, "privacy.audit.canaries": 1000, "train.num_threads": 1,
                 "privacy.ledger": str(tmp_path / "ledger.jsonl"), "output_dir": str(tmp_path / name), **more}
    return train_and_evaluate(load_config(None, overrides), show_progress=False).root


PRIVATE = {"privacy.dp": {"epsilon": CLAIMED, "delta": 1e-6, "trainable": "all"}}


def test_a_correct_dp_sgd_keeps_its_claim_and_nothing_tells_the_draws_before_the_audit(tiny_config, tmp_path):
    from trustfm.audit.canaries.plugin import audit_privacy_canaries_run
    from trustfm.encryption import is_encrypted
    from trustfm.runs import existing_run
    from trustfm.train.canaries import key_path, read_canaries

    run = _canary_run(tiny_config, tmp_path, "private", **PRIVATE)
    canaries = read_canaries(existing_run(run))
    assert canaries.kinds == ["input", "gradient"] and len(canaries.input) == len(canaries.gradient) == 1000
    # the draws are sealed, under a key outside the run folder; nothing else in the run holds them
    assert is_encrypted(run / "canaries" / "inclusion.sealed")
    assert not Path(canaries.sealed_with).is_relative_to(run) and Path(canaries.sealed_with) == key_path(None)
    info = json.loads((run / "run.json").read_text())
    assert info["privacy_audit"] == {"canaries": 1000, "kinds": ["input", "gradient"],
                                     "inclusion": "sealed in canaries/inclusion.sealed until the audit"}
    assert info["rows"]["augmented"] == 0  # the number included is not counted among the rows
    public = json.loads((run / "canaries" / "canaries.json").read_text())
    assert set(public) == {"count", "kinds", "words", "input", "gradient", "gradient_norm", "gradient_parameters",
                           "sealed_with", "shared_by"}
    assert all(set(c) == {"text", "label"} for c in public["input"])
    assert all(set(c) == {"seed", "initial"} for c in public["gradient"])
    train_texts = set(Path(tiny_config["data.train"]).read_text().splitlines())
    assert not {c["text"] for c in public["input"]} & train_texts
    logged = (run / "logs" / "metrics.jsonl").read_text()
    assert all(c["text"] not in logged for c in public["input"][:50])
    # canaries never reach the evaluation: the test split is the data file's alone
    assert json.loads((run / "results" / "performance.json").read_text())["n"] == info["rows"]["test"]

    result = audit_privacy_canaries_run(run)["privacy_canaries"]
    assert result.accounted_epsilon == pytest.approx(CLAIMED, abs=0.05) and result.delta == 1e-6
    assert result.claim == "stands" and result.epsilon_lower_bound < CLAIMED
    assert {a.canary_kind for a in result.audits} == {"input", "gradient"}
    assert all(300 < a.included < 700 for a in result.audits)  # a fair coin for each of 1,000
    # the report shows the accounted epsilon beside the audited bound, and says the claim stands
    assert run_cli(["report", str(run)]).returncode == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="privacy-canaries"' in page and "The DP claim stands" in page
    card = (run / "model_card.md").read_text(encoding="utf-8")
    assert "canaries" in card.lower()


def test_dp_sgd_with_its_noise_cut_is_caught(tiny_config, tmp_path, monkeypatch):
    from trustfm.train import dp_noise

    # the product has no switch for this: the noise is cut twentyfold, the accountant still says epsilon 2
    original = dp_noise.SecretRandomness.gaussian_
    monkeypatch.setattr(dp_noise.SecretRandomness, "gaussian_", lambda self, out, std: original(self, out, std / 20))
    run = _canary_run(tiny_config, tmp_path, "broken", **PRIVATE)
    monkeypatch.undo()
    done = run_cli(["audit", "privacy-canaries", str(run)])
    assert done.returncode == 4, done.stderr
    assert "REFUTED" in done.stdout
    result = json.loads((run / "results" / "privacy_canaries.json").read_text())
    assert result["accounted_epsilon"] == pytest.approx(CLAIMED, abs=0.05)
    assert result["claim"] == "refuted" and result["epsilon_lower_bound"] > CLAIMED
    gradient = next(a for a in result["audits"] if a["canary_kind"] == "gradient")
    assert gradient["epsilon_lower_bound"] > CLAIMED and gradient["auc"] > 0.65


def test_without_dp_the_canaries_show_a_large_epsilon(tiny_config, tmp_path):
    # 300 canaries (150 or so trained on beside the 400 rows): with 1,000 the tiny model memorised them unevenly,
    # ROC-AUC 0.76-0.99 over the draws; the draws come from OS randomness, so the test must hold for any draw
    run = _canary_run(tiny_config, tmp_path, "open", **{"privacy.audit.canaries": 300})
    done = run_cli(["audit", "privacy-canaries", str(run), "--format", "json"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["claim"] == "none" and result["accounted_epsilon"] is None
    (only,) = result["audits"]
    assert only["canary_kind"] == "input" and only["auc"] > 0.9 and only["epsilon_lower_bound"] > CLAIMED, only


def test_the_audit_needs_the_sealing_key_and_a_run_with_canaries(tiny_config, tmp_path):
    run = _canary_run(tiny_config, tmp_path, "sealed", **{"train.epochs": 1, "privacy.audit.canaries": 50,
                                                          "privacy.audit.key_file": str(tmp_path / "k" / "key")})
    (tmp_path / "k" / "key").rename(tmp_path / "moved")
    done = run_cli(["audit", "privacy-canaries", str(run)])
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "the key that sealed this run's canary draws is not here" in done.stderr
    plain = train_and_evaluate(load_config(None, {**tiny_config, "train.epochs": 1}), show_progress=False).root
    done = run_cli(["audit", "privacy-canaries", str(plain)])
    assert done.returncode != 0 and "trained without canaries" in done.stderr


def test_canaries_are_refused_where_they_cannot_work():
    from trustfm.errors import ConfigError

    base = {"data.train": "x.csv", "privacy.audit.canaries": 100}
    for more, words in [({"privacy.audit.kinds": ["gradient"]}, "without privacy.dp"),
                        ({"fairness.mitigation": "reweigh", "data.group_columns": ["g"], "fairness.sensitive": ["g"]},
                         "a group of their own"),
                        ({"privacy.dp": {"epsilon": 2.0, "clipping": "opacus"}, "privacy.audit.kinds": ["gradient"]},
                         "clipping opacus")]:
        with pytest.raises(ConfigError, match=words):
            load_config(None, {**base, **more})
    assert load_config(None, {**base, "privacy.dp": {"epsilon": 2.0, "trainable": "lora"}}).privacy.audit.kinds == [
        "input"]
