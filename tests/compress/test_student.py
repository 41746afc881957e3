"""Distillation and pruning building blocks: layer choice, the soft-label loss, Taylor importance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustfm.compress.student import distillation_loss, init_student, prune_model, taylor_importance, teacher_layers
from trustfm.errors import ConfigError
from trustfm.models.classifier import load_classifier


def test_teacher_layers_take_one_out_of_two_like_distilbert():
    assert teacher_layers(6, 3) == [0, 2, 4]
    assert teacher_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert teacher_layers(6, 2) == [0, 3]
    with pytest.raises(ConfigError, match="1 to 5 layers"):
        teacher_layers(6, 6)


def test_distillation_loss_is_the_kl_plus_cross_entropy_mix():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    gold = torch.tensor([0, 2, 1, -1, 2])
    batch = {"labels": torch.cat([gold[:, None].float(), teacher], dim=1)}
    t, alpha = 2.0, 0.3
    soft = (F.softmax(teacher / t, -1) * (F.log_softmax(teacher / t, -1) - F.log_softmax(student / t, -1))).sum() / 5
    hard = F.cross_entropy(student[gold >= 0], gold[gold >= 0])
    got = distillation_loss(temperature=t, alpha=alpha)(student, batch)
    torch.testing.assert_close(got, alpha * soft * t * t + (1 - alpha) * hard)
    # rows without gold labels only: the soft term alone
    unlabelled = {"labels": torch.cat([torch.full((5, 1), -1.0), teacher], dim=1)}
    torch.testing.assert_close(distillation_loss(temperature=t, alpha=alpha)(student, unlabelled), soft * t * t)


def test_student_keeps_the_chosen_teacher_layers(parent_run):
    teacher, _, _ = load_classifier(parent_run / "model")
    student, chosen = init_student(teacher, 1)
    assert chosen == [0] and len(student.encoder.encoder.layer) == 1
    assert student.encoder.config.num_hidden_layers == 1 and teacher.encoder.config.num_hidden_layers == 2
    torch.testing.assert_close(student.encoder.encoder.layer[0].attention.self.query.weight,
                               teacher.encoder.encoder.layer[0].attention.self.query.weight)


def test_pruning_removes_the_least_important_units_by_taylor_score(parent_run):
    model, tokenizer, _ = load_classifier(parent_run / "model")
    texts = ["good stuff here", "bad things there", "fine and good", "awful bad"] * 4
    labels = np.array([1, 0, 1, 0] * 4)
    heads, units = taylor_importance(model, tokenizer, texts, labels, max_length=32)
    assert [h.shape for h in heads] == [(2,), (2,)] and [u.shape for u in units] == [(64,), (64,)]
    assert all(np.all(s >= 0) for s in heads + units)
    structure = prune_model(model, tokenizer, texts, labels, fraction=0.5, max_length=32)
    assert structure["ffn_units"] == [32, 32]
    assert structure["heads"] == [[int(np.argmax(h))] for h in heads]
    with pytest.raises(ConfigError, match="between 0 and 1"):
        prune_model(model, tokenizer, texts, labels, fraction=1.0, max_length=32)
