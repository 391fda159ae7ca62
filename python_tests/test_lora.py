"""LoRA training (ramo.models.lora): the reward model (single head and rule heads) and the
Rule Adapter train adapters only, and the folder saved with them merged loads with plain
from_pretrained and scores as the trained model did. Skipped without peft."""

from __future__ import annotations

import json

import pytest
import torch

from python_tests.encoder_models import tiny_classifier_dir
from python_tests.test_reward import ROWS, capture_trainers, many_rows, write_jsonl

pytest.importorskip("peft")


def batch(tokenizer):
    from ramo.tokenization import encode, pad

    return pad([encode(tokenizer, r["prompt"], r["chosen"], 64) for r in ROWS], tokenizer)


def test_reward_model_lora_trains_adapters_and_saves_merged(tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from ramo.models import load_reward_model
    from ramo.reward import train_reward_model
    from ramo.reward.trainer import RewardTrainer

    seen = capture_trainers(monkeypatch, RewardTrainer)
    backbone = tiny_classifier_dir(tmp_path / "backbone")
    full = sum(p.numel() for p in
               AutoModelForSequenceClassification.from_pretrained(backbone).parameters())
    data = write_jsonl(tmp_path / "train.jsonl", many_rows(8))
    summary = train_reward_model(data, tmp_path / "rm", model=backbone, batch_size=4,
                                 max_steps=2, learning_rate=1e-2, lora=4, progress=False)
    assert 0 < summary["trainable_parameters"] < full / 4
    record = json.loads((tmp_path / "rm" / "ramo_training.json").read_text())
    assert record["arguments"]["lora"] == 4
    trained = seen[0].model.eval()
    assert type(trained).__name__.startswith("Peft")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert not any("lora" in name for name in reloaded.state_dict())
    _, tokenizer = load_reward_model(tmp_path / "rm", require_head=True)
    inputs = batch(tokenizer)
    with torch.no_grad():
        before = AutoModelForSequenceClassification.from_pretrained(backbone).eval()(**inputs)
        torch.testing.assert_close(reloaded(**inputs).logits, trained(**inputs).logits,
                                   rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before.logits, reloaded(**inputs).logits), "training changed nothing"


def test_rule_head_model_lora(tmp_path, monkeypatch):
    from ramo.models import RuleHeadRewardModel
    from ramo.reward import train_reward_model
    from ramo.reward.trainer import RuleHeadTrainer

    seen = capture_trainers(monkeypatch, RuleHeadTrainer)
    backbone = tiny_classifier_dir(tmp_path / "backbone")
    data = write_jsonl(tmp_path / "train.jsonl", many_rows(8))
    summary = train_reward_model(data, tmp_path / "rm", model=backbone, heads="rules",
                                 rules="default", k=3, batch_size=4, max_steps=2,
                                 learning_rate=1e-2, lora=4, progress=False)
    heads = 100 * (32 + 1)  # the default pool's heads train in full
    assert heads < summary["trainable_parameters"] < heads + 10_000
    trained = seen[0].model.eval()
    reloaded, tokenizer = RuleHeadRewardModel.from_pretrained(tmp_path / "rm")
    inputs = batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**inputs), trained(**inputs),
                                   rtol=1e-5, atol=1e-5)


def test_rule_adapter_lora(tmp_path):
    from ramo.adapter import RuleAdapter, train_adapter
    from ramo.io import Pair, Rule

    rules = [Rule(f"r{i}", f"rule {i}") for i in range(6)]
    pairs = [Pair(f"p{i}", r["prompt"], r["chosen"], r["rejected"]) for i, r in
             enumerate(many_rows(8))]
    out = tmp_path / "adapter"
    summary = train_adapter(pairs, [["r0", f"r{1 + i % 5}"] for i in range(8)], rules, out,
                            backbone=str(tiny_classifier_dir(tmp_path / "b", num_labels=6)),
                            k=2, epochs=1, batch_size=4, max_length=48, lora=2,
                            progress=False)
    assert summary["steps"] == 2
    meta = json.loads((out / "ramo_adapter.json").read_text())
    assert meta["training"]["lora"] == 2
    adapter = RuleAdapter.from_pretrained(out)
    assert adapter.logits(pairs, batch_size=4).shape == (8, 6)


@pytest.mark.parametrize("rank", [0, -1, 2.5, True])
def test_bad_rank_is_refused_before_anything_is_written(tmp_path, rank):
    from ramo.reward import train_reward_model

    data = write_jsonl(tmp_path / "train.jsonl", many_rows(4))
    with pytest.raises(ValueError, match="lora must be a positive integer, got"):
        train_reward_model(data, tmp_path / "rm", model=tmp_path / "absent", lora=rank,
                           progress=False)
    assert not (tmp_path / "rm").exists()
