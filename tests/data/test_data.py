import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_rows, write_csv
from trustfm.config.schema import DataConfig, ProblemPolicies
from trustfm.data.batching import bucketed_batches, encode_texts, pad_batch, padding_aware_batches
from trustfm.data.io import read_table
from trustfm.data.prepare import prepare_data
from trustfm.data.split import stratified_split
from trustfm.data.validate import label_order, validate_table
from trustfm.errors import DataError


@pytest.fixture
def frame():
    return pd.DataFrame(make_rows(40), dtype=object)


def test_all_formats_read_the_same_rows(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    import datasets

    datasets.Dataset.from_pandas(frame).save_to_disk(str(tmp_path / "hf"))
    for name in ("d.csv", "d.tsv", "d.jsonl", "d.parquet", "hf"):
        loaded = read_table(tmp_path / name)
        assert loaded["text"].tolist() == frame["text"].tolist(), name
        assert loaded["label"].tolist() == frame["label"].tolist(), name


def test_csv_with_embedded_newlines_keeps_row_numbers(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\n"line one\nline two",1\n"",0\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        validate_table(read_table(tmp_path / "d.csv"), file="d.csv", text_column="text", label_column="label")
    assert "row 2" in str(info.value) and "column 'text'" in str(info.value)


def test_missing_column_error_names_file_and_column(frame):
    with pytest.raises(DataError) as info:
        validate_table(frame, file="f.csv", text_column="text", label_column="sentiment")
    assert info.value.file == "f.csv" and info.value.column == "sentiment"
    assert "required column is missing" in str(info.value)


def test_each_problem_errors_by_default_and_drops_on_request(frame):
    frame = frame.copy()
    frame.loc[3, "text"] = "   "
    frame.loc[5, "label"] = None
    frame.loc[7, "id"] = frame.loc[6, "id"]
    frame.loc[9, "text"] = "bad bytes \udcff"
    with pytest.raises(DataError) as info:
        validate_table(frame, file="f", text_column="text", label_column="label", id_column="id")
    assert info.value.row is not None
    drop = ProblemPolicies(empty_text="drop", null_label="drop", duplicate_id="drop", undecodable="drop")
    part = validate_table(frame, file="f", text_column="text", label_column="label", id_column="id", policies=drop)
    assert [(r.row, r.kind) for r in part.rejected] == [
        (4, "empty_text"), (6, "null_label"), (8, "duplicate_id"), (10, "undecodable"),
    ]
    assert len(part) == 36 and part.rows_in == 40
    assert 4 not in part.rows.tolist() and 5 in part.rows.tolist()
    # rejections never carry the text (it may be personal data)
    assert all("bad bytes" not in json.dumps(r.as_dict()) for r in part.rejected)


def test_undecodable_bytes_in_a_file_are_found_by_row(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"text,label\nfine,1\nbroken \xff\xfe,0\n")
    with pytest.raises(DataError) as info:
        validate_table(read_table(tmp_path / "d.csv"), file="d.csv", text_column="text", label_column="label")
    assert info.value.row == 2 and "UTF-8" in str(info.value)


def test_unseen_labels_in_evaluation_data(frame):
    frame = frame.copy()
    frame.loc[0, "label"] = "neutral"
    with pytest.raises(DataError):
        validate_table(frame, file="f", text_column="text", label_column="label", known_labels=["pos", "neg"])


def test_label_order_is_numeric_when_labels_are_numbers():
    assert label_order(["10", "2", "1"]) == ["1", "2", "10"]
    assert label_order(["neg", "pos", "neg"]) == ["neg", "pos"]


def test_stratified_split_is_deterministic_and_keeps_proportions():
    labels = ["a"] * 300 + ["b"] * 100
    first = stratified_split(labels, validation=0.1, test=0.2, seed=3)
    second = stratified_split(labels, validation=0.1, test=0.2, seed=3)
    other = stratified_split(labels, validation=0.1, test=0.2, seed=4)
    for x, y in zip(first, second):
        assert np.array_equal(x, y)
    assert not np.array_equal(first[2], other[2])
    train, val, test = first
    assert len(train) + len(val) + len(test) == 400
    assert len(set(train) | set(val) | set(test)) == 400
    lab = np.array(labels)
    assert (lab[test] == "b").sum() == 20 and (lab[val] == "b").sum() == 10


def test_prepare_data_uses_given_test_file_and_splits_the_rest(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_rows(100))
    test = write_csv(tmp_path / "test.csv", make_rows(30, seed=5))
    data = prepare_data(DataConfig(train=train, test=test), seed=1)
    assert len(data.test) == 30 and len(data.validation) == 10 and len(data.train) == 90
    assert data.label_names == ["neg", "pos"]
    assert set(data.file_hashes) == {str(train), str(test)}


def test_bucketed_batches_cover_every_row_once_and_reduce_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = bucketed_batches(lengths, batch_size=16, bucket_size=8, seed=1, epoch=2)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    again = bucketed_batches(lengths, batch_size=16, bucket_size=8, seed=1, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_batches = bucketed_batches(lengths, batch_size=16, bucket_size=1, seed=1, epoch=2)
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded < 0.75 * padded_random


def _pass_cost(batches, lengths, per_pass):
    return sum(len(b) * lengths[b].max() + per_pass for b in batches)


def test_padding_aware_batches_are_the_cheapest_split_of_the_sorted_rows():
    import itertools

    rng = np.random.default_rng(3)
    for trial in range(20):
        lengths = rng.integers(2, 64, size=int(rng.integers(1, 10)))
        batches = padding_aware_batches(lengths, max_batch=4, pass_cost_tokens=24)
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 4 for b in batches)
        # every split of the sorted rows into runs of at most 4: none is cheaper
        order = np.argsort(lengths, kind="stable")
        best = min(_pass_cost(np.split(order, list(cuts)), lengths, 24)
                   for k in range(len(lengths)) for cuts in itertools.combinations(range(1, len(lengths)), k)
                   if all(len(part) <= 4 for part in np.split(order, list(cuts))))
        assert _pass_cost(batches, lengths, 24) == best


def test_padding_aware_batches_split_a_mixed_micro_batch_and_keep_uniform_rows_whole():
    lengths = np.array([60, 5, 6, 58, 7, 5, 61, 6])
    one_pass = _pass_cost([np.arange(8)], lengths, 32)
    batches = padding_aware_batches(lengths, max_batch=64, pass_cost_tokens=32)
    assert [sorted(lengths[b].tolist()) for b in batches] == [[5, 5, 6, 6, 7], [58, 60, 61]]
    assert _pass_cost(batches, lengths, 32) < 0.6 * one_pass
    assert sorted(len(b) for b in padding_aware_batches(np.full(100, 9), max_batch=32, pass_cost_tokens=32)) == [4, 32, 32, 32]
    assert padding_aware_batches(np.zeros(0, dtype=int), max_batch=8, pass_cost_tokens=32) == []


def test_encode_counts_truncations_and_pads(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = encode_texts(tokenizer, ["short text", "word " * 100], max_length=16)
    assert encoded.truncated.tolist() == [False, True]
    assert encoded.lengths.tolist() == [4, 16]
    batch = pad_batch(encoded.input_ids, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(dim=1).tolist() == [4, 16]
