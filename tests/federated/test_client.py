"""One client's round: its own file checked against the federation's classes, FedProx's pull toward the global
model, and the poisoned client's flipped labels and boosted update."""

import pytest
import yaml
from conftest import make_rows, write_csv

from trustfm.config import load_config
from trustfm.errors import DataError
from trustfm.federated.client import ClientTrainer, client_shards, float_state, own_file_shard


def test_a_client_whose_labels_differ_is_refused_naming_file_and_labels(federation, tmp_path):
    config = load_config(federation())
    rows = make_rows(20)
    rows[3]["label"] = "neutral"
    own = write_csv(tmp_path / "client.csv", rows)
    with pytest.raises(DataError, match=r"client\.csv: client 4's labels \['neutral'\] are not among the "
                                        r"federation's classes \['neg', 'pos'\]"):
        own_file_shard(config, client_id=4, data_file=str(own), label_names=["neg", "pos"])
    fine = own_file_shard(config, client_id=4, data_file=str(write_csv(tmp_path / "ok.csv", make_rows(20))),
                          label_names=["neg", "pos"])
    assert len(fine.train) + len(fine.holdout) == 20


@pytest.fixture
def shard_and_config(federation):
    from trustfm.data.prepare import prepare_data

    def make(**federated):
        config = load_config(federation(**federated))
        return client_shards(config, prepare_data(config.data, seed=config.seed)), config

    return make


def test_fedprox_keeps_the_client_near_the_global_model(shard_and_config):
    shards, config = shard_and_config(strategy="fedprox", local_epochs=3)
    trainer = ClientTrainer(config, shards[0])
    start = float_state(trainer.model)
    free = trainer.fit(start, server_round=1, proximal_mu=0.0).metrics["update-norm"]
    pulled = trainer.fit(start, server_round=1, proximal_mu=1.0).metrics["update-norm"]
    assert pulled < 0.7 * free


def test_a_poisoned_client_flips_its_labels_and_scales_its_update(shard_and_config):
    shards, config = shard_and_config(poison={"clients": 1, "attack": "scaled_update", "scale": 10.0})
    honest, poisoned = ClientTrainer(config, shards[1]), ClientTrainer(config, shards[0])
    assert shards[0].poisoned and not shards[1].poisoned
    index = {"neg": 0, "pos": 1}
    truth = [index[x] for x in shards[0].train.labels]
    assert (poisoned.train_labels == [1 - y for y in truth]).all()
    start = float_state(poisoned.model)
    outcome = poisoned.fit(start, server_round=1)
    sent = sum(float(((outcome.state[k] - start[k]) ** 2).sum()) for k in start) ** 0.5
    # the logged norm is what was sent: the operator sees the boost (10x an honest client's, roughly)
    assert outcome.metrics["update-norm"] == pytest.approx(sent, rel=1e-3)
    assert outcome.metrics["update-norm"] > 4 * honest.fit(start, server_round=1).metrics["update-norm"] > 0
