"""Round trips with TRL: ramo's labeled files train in TRL's RewardTrainer, and TRL's data
sets (standard and conversational, explicit and implicit prompt, a file or a datasets
folder) train in `ramo rm train`. Skipped where TRL or datasets is not installed."""

from __future__ import annotations

import json
import math

import pytest

from python_tests.judge_models import tiny_tokenizer

PROMPTS = ["how do I make a bomb", "tell me a joke about cats", "what is the capital of France"]
GOOD = ["sorry I can not help with that", "why did the cat sit on the computer",
        "Paris is the capital"]
BAD = ["here are the steps mix these chemicals", "do not insult people", "never give weapon"]


def tiny_reward_llama(tok):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         num_labels=1, pad_token_id=tok.pad_token_id)
    return LlamaForSequenceClassification(config)


def labeled_by_ramo(path, conversational: bool):
    """A labeled file as `ramo label` writes it, from pairs in either format."""
    from ramo.io import Selection, as_pairs, write_preferences
    from ramo.label import label

    def prompt(i):
        if not conversational:
            return PROMPTS[i]
        turns = [{"role": "user", "content": PROMPTS[i]}]
        return ([{"role": "user", "content": "tell me a joke"},
                 {"role": "assistant", "content": GOOD[1]}] + turns) if i == 0 else turns

    def response(text):
        return [{"role": "assistant", "content": text}] if conversational else text

    pairs = as_pairs([{"id": f"p{i}", "prompt": prompt(i), "response_a": response(GOOD[i]),
                       "response_b": response(BAD[i])} for i in range(3)])
    selections = [Selection(f"p{i}", ["r1", "r2"], 1.0, -0.5 * i, 1.0 + 0.5 * i, 1)
                  for i in range(3)]
    labeled, counts = label(pairs, selections, ["r1", "r2"])
    assert counts["labeled"] == 3
    write_preferences(path, labeled)
    return path


# TRL's config still sets the old name of activation_checkpointing.
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_ramo_labeled_file_trains_in_trl_reward_trainer(tmp_path, conversational):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")

    path = labeled_by_ramo(tmp_path / "labeled.jsonl", conversational)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert isinstance(rows[0]["prompt"], list) == conversational
    assert {"margin", "rule_ids", "chosen_side", "id"} <= set(rows[0])
    data = datasets.load_dataset("json", data_files=str(path), split="train",
                                 cache_dir=str(tmp_path / "cache"))
    tok = tiny_tokenizer(chat=True)
    args = trl.RewardConfig(output_dir=str(tmp_path / "trl"), max_steps=1,
                            per_device_train_batch_size=3, report_to="none", use_cpu=True,
                            bf16=False, gradient_checkpointing=False, max_length=128,
                            logging_steps=1, save_strategy="no", dataloader_num_workers=0)
    trainer = trl.RewardTrainer(model=tiny_reward_llama(tok), args=args, train_dataset=data,
                                processing_class=tok)
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
    assert len(trainer.train_dataset) == 3, "TRL dropped rows (too long?)"


TRL_ROWS = {
    "standard, explicit prompt": [{"prompt": p, "chosen": " " + g, "rejected": " " + b}
                                  for p, g, b in zip(PROMPTS, GOOD, BAD)],
    "conversational, explicit prompt": [
        {"prompt": [{"role": "user", "content": p}],
         "chosen": [{"role": "assistant", "content": g}],
         "rejected": [{"role": "assistant", "content": b}]} for p, g, b in zip(PROMPTS, GOOD, BAD)],
    "conversational, implicit prompt": [
        {"chosen": [{"role": "user", "content": p}, {"role": "assistant", "content": g}],
         "rejected": [{"role": "user", "content": p}, {"role": "assistant", "content": b}]}
        for p, g, b in zip(PROMPTS, GOOD, BAD)],
}


@pytest.mark.parametrize("kind", list(TRL_ROWS))
@pytest.mark.parametrize("storage", ["jsonl", "datasets folder"])
def test_trl_data_set_trains_in_ramo_rm_train(tmp_path, kind, storage):
    datasets = pytest.importorskip("datasets")
    from ramo.models import load_reward_model
    from ramo.reward import train_reward_model

    tok = tiny_tokenizer(chat=True)
    tiny_reward_llama(tok).save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    rows = TRL_ROWS[kind]
    if storage == "jsonl":
        data = tmp_path / "trl.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        data = tmp_path / "trl_dataset"
        datasets.Dataset.from_list(rows).save_to_disk(data)
    summary = train_reward_model(data, tmp_path / "rm", model=tmp_path / "llama", batch_size=3,
                                 max_steps=1, progress=False)
    assert summary["steps"] == 1 and summary["pairs"] == 3
    assert math.isfinite(summary["final_loss"])
    load_reward_model(tmp_path / "rm", require_head=True)
