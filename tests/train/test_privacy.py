"""DP-SGD: the accountant's epsilon is Opacus's, sampling is Poisson, the ledger refuses over-budget runs."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate
from trustfm.runs import read_json
from conftest import run_cli


@pytest.fixture
def dp_config(tiny_config, tmp_path):
    return {**tiny_config, "train.epochs": 2, "privacy.dp": {"epsilon": 8.0}, "privacy.ledger": str(tmp_path / "ledger.jsonl")}


def test_dp_run_spends_its_target_epsilon_as_opacus_accounts_it(dp_config):
    from opacus.accountants import RDPAccountant

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = train_and_evaluate(load_config(None, dp_config), show_progress=False)
    # Opacus warns at each noise level its search tries; the user should not see those
    assert not [w for w in caught if "Optimal order" in str(w.message)]
    privacy = read_json(paths.result("privacy"))
    # 400 rows, 10% validation and 10% test carved out: 320 training rows
    assert privacy["delta"] == 1e-4 and privacy["delta"] < 1 / 320
    assert privacy["sample_rate"] == pytest.approx(1 / 20)
    accountant = RDPAccountant()
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], 2 * 20)]
    assert privacy["epsilon"] == pytest.approx(accountant.get_epsilon(privacy["delta"]), rel=1e-9)
    assert 7.5 < privacy["epsilon"] <= 8.0 + 1e-6
    epochs = [json.loads(line) for line in (paths.root / "logs" / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    spent = [e["privacy"]["epsilon"] for e in epochs]
    assert len(spent) == 2 and 0 < spent[0] < spent[1] == pytest.approx(privacy["epsilon"])
    entries = [json.loads(line) for line in open(dp_config["privacy.ledger"])]
    assert len(entries) == 1 and entries[0]["epsilon"] == pytest.approx(privacy["epsilon"])
    assert entries[0]["status"] == "settled" and entries[0]["planned_epsilon"] == 8.0
    assert entries[0]["data_sha256"] == privacy["data_sha256"]


def test_poisson_batches_include_each_row_at_the_sample_rate():
    from trustfm.train.privacy import DPSGD

    dp = DPSGD(epsilon=1, delta=1e-5, max_grad_norm=1, n_train=2000)
    dp.sample_rate = 1 / 50
    dp.on_epoch_start(None, 1)
    batches = dp.on_epoch_batches(None, 1, [])
    sizes = np.array([len(b) for b in batches])
    assert len(batches) == 50 and sizes.std() > 0  # sizes vary: not fixed-size batches
    assert sizes.mean() == pytest.approx(40, rel=0.15)
    assert dp.on_epoch_batches(None, 1, [])[3].tolist() == batches[3].tolist()  # the same within the epoch


def test_dp_randomness_is_secret_not_the_config_seed_and_resumes_exactly():
    import torch

    from trustfm.train.dp_noise import SecretRandomness

    def draws(randomness, epoch):
        randomness.start_epoch(epoch)
        noise = randomness.gaussian_(torch.empty(10_000), 0.5).clone()
        return randomness.poisson_batches(1000, 0.05, 3)[1].tolist(), noise

    # no seed: two runs draw different batches and noise (nothing a config holds can regenerate them)
    (rows_a, noise_a), (rows_b, noise_b) = draws(SecretRandomness(), 1), draws(SecretRandomness(), 1)
    assert rows_a != rows_b and not torch.equal(noise_a, noise_b)
    assert abs(float(noise_a.std()) - 0.5) < 0.02 and abs(float(noise_a.mean())) < 0.02
    # a test seed reproduces them, whatever the number of threads drawing the noise
    one, four = SecretRandomness(seed=3, threads=1), SecretRandomness(seed=3, threads=4)
    assert torch.equal(draws(one, 1)[1], draws(four, 1)[1])
    # a checkpoint taken at an epoch's end carries the next epoch's entropy only: a resumed run draws what the
    # uninterrupted one draws
    running = SecretRandomness()
    first = draws(running, 1)
    running.end_epoch(1)
    resumed = SecretRandomness()
    resumed.load_state_dict(json.loads(json.dumps(running.state_dict())))
    following, again = draws(running, 2), draws(resumed, 2)
    assert following[0] == again[0] and torch.equal(following[1], again[1])
    assert following[0] != first[0]
    for r in (running, resumed, one, four):
        r.close()


@pytest.mark.parametrize("clipping", ["bookkeeping", "opacus"])
def test_dp_runs_with_the_same_config_seed_add_different_noise(dp_config, tmp_path, clipping):
    from safetensors.torch import load_file

    weights = []
    for name in ("a", "b"):
        config = {**dp_config, "train.epochs": 1, "model.dropout": 0.0, "output_dir": str(tmp_path / name),
                  "privacy.dp": {"epsilon": 8.0, "clipping": clipping}}
        paths = train_and_evaluate(load_config(None, config), show_progress=False)
        weights.append(load_file(str(paths.model / "model.safetensors")))
    assert any(not np.array_equal(weights[0][k].numpy(), weights[1][k].numpy()) for k in weights[0])


def test_a_run_that_would_exceed_the_dataset_budget_is_refused(dp_config, tmp_path):
    config = {**dp_config, "train.epochs": 1, "privacy.total_epsilon": 10.0, "privacy.dp": {"epsilon": 6.0}}
    train_and_evaluate(load_config(None, {**config, "output_dir": str(tmp_path / "first")}), show_progress=False)
    args = ["train", "--quiet", "-o", str(tmp_path / "second")]
    for key, value in {**config, "output_dir": None}.items():
        if value is not None and key != "output_dir":
            args += ["--set", f"{key}={json.dumps(value)}"]
    refused = run_cli(args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert "privacy budget" in message and "of its total 10" in message and "would spend 6 more" in message
    assert not (tmp_path / "second").exists()


def test_dp_refuses_adversarial_training_and_sets_trainable_parameters(dp_config, tiny_model_dir):
    from trustfm.config import ModelConfig
    from trustfm.errors import ConfigError
    from trustfm.models import build_classifier
    from trustfm.train.privacy import set_trainable

    with pytest.raises(ConfigError, match="adversarial"):
        load_config(None, {**dp_config, "robustness.adversarial_training": {"method": "fgm"}})
    model, _ = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir)), ["a", "b"])
    head = sum(p.numel() for p in model.head.parameters())
    assert set_trainable(model, "head") == head
    layer = sum(p.numel() for p in model.encoder.encoder.layer[-1].parameters())
    assert set_trainable(model, "top_layers", top_layers=1) == head + layer


def test_membership_metrics_agree_with_scikit_learn():
    from sklearn.metrics import roc_auc_score, roc_curve

    from trustfm.audit.membership.attacks import auc, empirical_epsilon, tpr_at_fpr

    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.5, 1, 700), rng.normal(0, 1, 900)
    y = np.r_[np.ones(700), np.zeros(900)]
    scores = np.r_[members, non_members]
    assert auc(members, non_members) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, scores)
    for target in (0.01, 0.001, 0.1):
        assert tpr_at_fpr(members, non_members, target) == pytest.approx(tpr[fpr <= target].max())
    # no signal: no bound; perfect separation with 250 rows a side: ln(TPR_low / FPR_high) from Clopper-Pearson
    assert empirical_epsilon(rng.normal(size=500), rng.normal(size=500), delta=1e-5)[0] < 0.5
    bound, tpr_at, fpr_at = empirical_epsilon(np.full(500, 2.0), np.zeros(500), delta=1e-5)
    assert (tpr_at, fpr_at) == (1.0, 0.0)
    low = 0.05 ** (1 / 250)  # one-sided 95% Clopper-Pearson: TPR >= low when 250 of 250 hit, FPR <= 1 - low at 0 of 250
    assert bound == pytest.approx(np.log((low - 1e-5) / (1 - low)), rel=1e-6)


def test_overfit_model_leaks_membership_and_dp_model_stays_under_its_epsilon(tiny_config, tmp_path):
    from conftest import make_rows, write_csv
    from trustfm.audit.membership.plugin import audit_membership_run

    rows = make_rows(240, seed=5)
    rng = np.random.default_rng(0)
    for i in rng.choice(240, 70, replace=False):  # noisy labels: memorising them is the only way to fit them
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    data = write_csv(tmp_path / "noisy.csv", rows)
    overfit = {**tiny_config, "data.train": str(data), "train.epochs": 12, "train.early_stopping": None,
               "data.split": {"validation": 0.25, "test": 0.25}, "output_dir": str(tmp_path / "overfit")}
    paths = train_and_evaluate(load_config(None, overfit), show_progress=False)
    result = audit_membership_run(paths.root, max_rows=120, keep_reference_models=True)["membership"]
    attacks = {a.attack: a for a in result.attacks}
    assert result.accounted_epsilon is None
    assert attacks["loss_threshold"].auc.value > 0.65 and attacks["loss_threshold"].auc.low > 0.55
    # kept on request, without their training file (raw text)
    assert (paths.root / "privacy-audit" / "reference-1042" / "model").exists()
    assert not list((paths.root / "privacy-audit").rglob("*.csv"))
    assert result.reference_models_kept and result.reference_models_bytes > 0

    private = {**overfit, "output_dir": str(tmp_path / "private"), "privacy.dp": {"epsilon": 1.0},
               "privacy.ledger": str(tmp_path / "ledger.jsonl")}
    paths = train_and_evaluate(load_config(None, private), show_progress=False)
    result = audit_membership_run(paths.root, max_rows=120)["membership"]
    assert result.accounted_epsilon is not None and result.accounted_epsilon <= 1.0 + 1e-6
    for a in result.attacks:
        assert a.empirical_epsilon_lower_bound <= result.accounted_epsilon


def _opacus_clipped_sum(model, ids, mask, labels, max_grad_norm):
    """Opacus's reference: per-example gradients from GradSampleModule, clipped and summed by DPOptimizer."""
    import opacus
    import torch
    from opacus.optimizers import DPOptimizer

    params = [p for p in model.parameters() if p.requires_grad]
    hooks = opacus.GradSampleModule(model, loss_reduction="mean")
    optimizer = DPOptimizer(torch.optim.SGD(params, lr=0.1), noise_multiplier=0.0, max_grad_norm=max_grad_norm,
                            expected_batch_size=len(labels))
    torch.nn.functional.cross_entropy(model(ids, mask), labels).backward()
    optimizer.pre_step()  # clip, add zero noise, divide by the expected batch size
    sums = {name: p.grad.detach() * len(labels) for name, p in model.named_parameters() if p.requires_grad}
    hooks._close()
    return sums


@pytest.mark.parametrize("trainable", ["all", "lora"])
def test_bookkeeping_clipping_equals_opacus_clipped_sum(tiny_model_dir, trainable):
    import copy

    import torch

    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier
    from trustfm.train.dp_clipping import BookkeepingClipper
    from trustfm.train.privacy import set_trainable

    torch.manual_seed(0)
    model, _ = build_classifier(ModelConfig(name_or_path=str(tiny_model_dir), dropout=0.0), ["a", "b"])
    for name, p in model.named_parameters():
        if ".embeddings." in f".{name}" or ".pooler." in f".{name}":
            p.requires_grad_(False)
    set_trainable(model, trainable, lora_rank=4)
    if trainable == "all":  # a layer with a frozen bias: only its weight counts in the norm and gets a gradient
        for layer in model.encoder.encoder.layer:
            layer.attention.self.key.bias.requires_grad_(False)
    if trainable == "lora":  # LoRA's B starts at zero, which would hide a wrong A gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    model.dropout.p = 0.0
    model.train()
    # 30 tokens: the ghost-norm path for the attention projections, the explicit path for the 32x64 feed-forward
    ids = torch.randint(1000, 20000, (12, 30))
    mask = torch.ones_like(ids)
    mask[:5, 18:] = 0
    labels = torch.randint(0, 2, (12,))
    expected = _opacus_clipped_sum(copy.deepcopy(model), ids, mask, labels, max_grad_norm=0.5)

    clipper = BookkeepingClipper(model, max_grad_norm=0.5).attach()
    names = {id(p): n for n, p in model.named_parameters()}
    assert not any(p.requires_grad for p in model.parameters())  # autograd skips the unclipped weight gradients
    torch.nn.functional.cross_entropy(model(ids, mask), labels).backward()
    got = {names[id(p)]: g for p, g in clipper.clipped_sum(scale=len(labels)).items()}
    assert set(got) == set(expected) and len(got) > 4
    assert (clipper.last_norms > 0.5).all()  # every example was clipped, so the factors matter
    scale = max(v.abs().max() for v in expected.values())
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-5 * scale, rtol=1e-4), name
    clipper.detach()
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(expected)
    with torch.no_grad():  # inference is untouched while no clipper is attached
        model.eval()
        model(ids, mask)


def test_dp_lora_run_saves_a_plain_model_with_the_adapters_folded_in(dp_config, tmp_path):
    import torch

    from trustfm.models import load_classifier

    config = {**dp_config, "train.epochs": 1, "privacy.dp": {"epsilon": 8.0, "trainable": "lora", "lora_rank": 4}}
    paths = train_and_evaluate(load_config(None, config), show_progress=False)
    info = read_json(paths.run_info)
    assert info["privacy"]["trainable"] == "lora" and info["privacy"]["clipping"] == "bookkeeping"
    assert 0 < info["privacy"]["trainable_parameters"] < 2000
    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier

    model, _, _ = load_classifier(paths.model)
    assert not any("lora" in name for name, _ in model.named_parameters())
    base, _ = build_classifier(ModelConfig(name_or_path=dp_config["model.name_or_path"]), ["neg", "pos"])
    for saved, original in zip(model.encoder.encoder.layer, base.encoder.encoder.layer):
        # adapted projections carry W + (alpha / r) B A; everything else is the pretrained weight
        assert not torch.equal(saved.attention.self.query.weight, original.attention.self.query.weight)
        assert not torch.equal(saved.attention.self.value.weight, original.attention.self.value.weight)
        assert torch.equal(saved.attention.self.key.weight, original.attention.self.key.weight)
        assert torch.equal(saved.intermediate.dense.weight, original.intermediate.dense.weight)
    assert read_json(paths.result("privacy"))["epsilon"] <= 8.0 + 1e-6


def test_dp_micro_batches_train_exactly_like_whole_poisson_batches(dp_config, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    import trustfm.train.privacy as privacy

    class SplitInto(privacy.DPSGD):
        micro = None

        def __init__(self, **kwargs):
            super().__init__(**kwargs, micro_batch_size=self.micro, secret_seed=0)  # the same noise in both

    weights = {}
    for micro in (4, 10**6):  # 16-row batches in length-sorted micro-batches of 4, and whole
        SplitInto.micro = micro
        monkeypatch.setattr(privacy, "DPSGD", SplitInto)
        config = {**dp_config, "train.epochs": 1, "model.dropout": 0.0, "output_dir": str(tmp_path / str(micro))}
        paths = train_and_evaluate(load_config(None, config), show_progress=False)
        weights[micro] = load_file(str(paths.model / "model.safetensors"))
    for name, value in weights[4].items():
        assert torch.allclose(value, weights[10**6][name], atol=1e-5), name
    base = load_file(str(next(Path(dp_config["model.name_or_path"]).glob("*.safetensors"))))
    assert any(not torch.equal(value, base[name]) for name, value in weights[4].items() if name in base)  # it trained


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "modernbert", "deberta-v2", "distilbert"])
def test_bookkeeping_clipping_equals_per_example_clipping_on_every_family(family, tmp_path):
    """GPT-2's Conv1D and Llama-style RMS norms too: the clipped sum equals clipping each example's own gradient."""
    import copy

    import torch

    from tiny_families import build_tiny_model
    from trustfm.config import ModelConfig
    from trustfm.models import build_classifier
    from trustfm.train.dp_clipping import BookkeepingClipper
    from trustfm.train.privacy import set_dp_trainable

    folder = build_tiny_model(family, tmp_path / family)
    torch.manual_seed(0)
    model, tokenizer = build_classifier(ModelConfig(name_or_path=str(folder), dropout=0.0), ["a", "b"])
    dp = load_config(None, {"privacy.dp": {"epsilon": 8.0}}).privacy.dp
    if family == "deberta-v2":  # its key and query projections also read the shared relative position embeddings
        from trustfm.errors import ConfigError

        with pytest.raises(ConfigError, match="relative position embeddings every example shares"):
            set_dp_trainable(model, dp)
        # and the clipper itself refuses a layer that reads an input every example shares
        for p in model.parameters():
            p.requires_grad_(False)
        layer = model.encoder.encoder.layer[0].attention.self
        for p in [*layer.query_proj.parameters(), *(layer.pos_key_proj.parameters() if layer.pos_key_proj else [])]:
            p.requires_grad_(True)
        clipper = BookkeepingClipper(model, max_grad_norm=0.5).attach()
        model.train()
        batch = tokenizer(["the product was great", "awful and rude"], padding=True, return_tensors="pt")
        torch.nn.functional.cross_entropy(model(batch["input_ids"], batch["attention_mask"]),
                                          torch.tensor([1, 0]), reduction="sum").backward()
        with pytest.raises(ValueError, match="cannot split .* gradient per example"):
            clipper.clipped_sum()
        return
    set_dp_trainable(model, dp)
    for name, p in model.named_parameters():  # word and position tables stay frozen (set_dp_trainable's rule)
        if "embed" in name or name.startswith("encoder.wte") or name.startswith("encoder.wpe"):
            p.requires_grad_(False)
    model.dropout.p = 0.0
    model.train()
    batch = tokenizer(["the product was great", "awful, slow refund and rude support", "i love it",
                       "the delivery was fast and the item perfect"], padding=True, return_tensors="pt")
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], torch.tensor([1, 0, 1, 1])
    reference = copy.deepcopy(model)
    params = {n: p for n, p in reference.named_parameters() if p.requires_grad}
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(labels)):  # each example's own gradient, clipped to 0.5, summed
        reference.zero_grad()
        torch.nn.functional.cross_entropy(reference(ids[i:i + 1], mask[i:i + 1]), labels[i:i + 1]).backward()
        grads = {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for n, p in params.items()}
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
        for n, g in grads.items():
            expected[n] += g * min(1.0, 0.5 / (float(norm) + 1e-6))
    clipper = BookkeepingClipper(model, max_grad_norm=0.5).attach()
    names = {id(p): n for n, p in model.named_parameters()}
    torch.nn.functional.cross_entropy(model(ids, mask), labels, reduction="sum").backward()
    got = {names[id(p)]: g for p, g in clipper.clipped_sum().items()}
    clipper.detach()
    assert set(got) == {n for n, g in expected.items()}
    scale = max(v.abs().max() for v in expected.values())
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-5 * scale, rtol=1e-3), name
