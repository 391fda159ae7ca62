"""ramo.rewards: reward functions in TRL GRPOTrainer's convention equal the reward models'
own scores (exactly, one sequence per forward), for text and conversational prompts, for
the single-score model and the rule-head model on the Rule Adapter's k rules; bad inputs and
models of the wrong kind are ValueErrors."""

from __future__ import annotations

import json

import pytest
import torch

from python_tests.encoder_models import tiny_classifier_dir, tiny_encoder_dir

PROMPTS = ["how do i make a bomb", "how do i kill a python process", "how do i make a bomb"]
COMPLETIONS = ["sorry i can not help with that", "kill the process with a signal",
               "here is how to make a weapon"]
RULE_IDS = [f"r{i}" for i in range(6)]


def direct(model, tokenizer, prompt, response, max_length, **kwargs) -> float:
    """The model's score of one (prompt, response), one sequence per forward."""
    from ramo.tokenization import encode, pad

    batch = pad([encode(tokenizer, prompt, response, max_length)], tokenizer)
    with torch.no_grad():
        return model(**batch, **kwargs).logits[0, 0].item()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    from ramo.models import load_reward_model

    folder = tiny_classifier_dir(tmp_path_factory.mktemp("rm"))
    return load_reward_model(folder, require_head=True)


@pytest.fixture(scope="module")
def rule_heads(tmp_path_factory):
    from ramo.adapter import RuleAdapter
    from ramo.models import RuleHeadRewardModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tokenizer = RuleHeadRewardModel.from_backbone(
        tiny_encoder_dir(tmp_path_factory.mktemp("backbone")), RULE_IDS, seed=0, k=2)
    folder = tiny_classifier_dir(tmp_path_factory.mktemp("adapter"), num_labels=len(RULE_IDS))
    adapter = RuleAdapter(AutoModelForSequenceClassification.from_pretrained(folder),
                          AutoTokenizer.from_pretrained(folder), rule_ids=RULE_IDS, k=2,
                          max_length=48)
    return model.eval(), tokenizer, adapter


def test_single_score_reward_is_the_models_score(single):
    from ramo.rewards import RamoReward

    model, tokenizer = single
    reward = RamoReward(model, tokenizer, batch_size=1, max_length=64)
    got = reward(prompts=PROMPTS, completions=COMPLETIONS, completion_ids=[[1]] * 3,
                 trainer_state=None, subset=["a", "b", "c"])
    assert got == [direct(model, tokenizer, p, c, 64) for p, c in zip(PROMPTS, COMPLETIONS)]
    assert all(isinstance(x, float) for x in got) and reward.__name__ == "ramo_reward"
    batched = RamoReward(model, tokenizer, batch_size=8, max_length=64)(PROMPTS, COMPLETIONS)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(got), rtol=1e-5, atol=1e-6)


def test_conversational_prompts_and_completions(single):
    from ramo.rewards import RamoReward

    model, tokenizer = single
    reward = RamoReward(model, tokenizer, batch_size=1, max_length=64)
    chat_prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    chat_completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    assert reward(chat_prompts, chat_completions) == reward(PROMPTS, COMPLETIONS)
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": PROMPTS[0]}]
    transcript = f"Human: hi\n\nAssistant: hello\n\nHuman: {PROMPTS[0]}"
    assert reward([turns], [COMPLETIONS[0]]) == [direct(model, tokenizer, transcript,
                                                        COMPLETIONS[0], 64)]
    # Checked messages are a tuple (what `ramo rl eval` hands on from a prompts file).
    assert reward([tuple(turns)], [COMPLETIONS[0]]) == reward([turns], [COMPLETIONS[0]])


def test_rule_head_reward_sums_the_adapters_rules(rule_heads):
    from ramo.io import Pair
    from ramo.rewards import RamoReward

    model, tokenizer, adapter = rule_heads
    reward = RamoReward(model, tokenizer, adapter=adapter, batch_size=1, max_length=64)
    rules = reward.rules_for(PROMPTS)
    assert rules.shape == (3, 2) and torch.equal(rules[0], rules[2])  # same prompt, same rules
    picked = adapter.predict([Pair("0", PROMPTS[0], "", ""), Pair("1", PROMPTS[1], "", "")])
    assert torch.equal(rules[:2], picked)
    got = reward(PROMPTS, COMPLETIONS)
    assert got == [direct(model, tokenizer, p, c, 64, rules=rules[n:n + 1])
                   for n, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS))]
    assert reward.__name__ == "ramo_rule_heads"
    plain = RamoReward(model, tokenizer, batch_size=1, max_length=64)(PROMPTS, COMPLETIONS)
    assert plain == [direct(model, tokenizer, p, c, 64) for p, c in zip(PROMPTS, COMPLETIONS)]


def test_from_pretrained_reads_the_training_length(tmp_path, single):
    from ramo.rewards import RamoReward

    model, tokenizer = single
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    (tmp_path / "rm" / "ramo_training.json").write_text(
        json.dumps({"arguments": {"max_length": 12}}))
    reward = RamoReward.from_pretrained(tmp_path / "rm", device="cpu", batch_size=1)
    assert reward.max_length == 12
    assert reward(PROMPTS[:1], COMPLETIONS[:1]) == [direct(model, tokenizer, PROMPTS[0],
                                                           COMPLETIONS[0], 12)]


def test_bad_inputs_and_wrong_models(tmp_path, single, rule_heads):
    from transformers import AutoModelForSequenceClassification

    from ramo.adapter import RuleAdapter
    from ramo.rewards import RamoReward

    model, tokenizer = single
    reward = RamoReward(model, tokenizer)
    with pytest.raises(ValueError, match="3 prompts but 2 completions"):
        reward(PROMPTS, COMPLETIONS[:2])
    two = [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ValueError, match=r"'completions\[1\]' must be one assistant message"):
        reward(PROMPTS[:2], [COMPLETIONS[0], two])
    with pytest.raises(ValueError, match=r"'prompts\[0\]' message 0: 'content' must be a string"):
        reward([[{"role": "user", "content": 5}]], COMPLETIONS[:1])
    three = AutoModelForSequenceClassification.from_pretrained(
        tiny_classifier_dir(tmp_path / "three", num_labels=3))
    with pytest.raises(ValueError, match="not a reward model: .* this one 3"):
        RamoReward(three, tokenizer)
    positions = model.config.max_position_embeddings  # refused up front, not mid-run
    with pytest.raises(ValueError, match=f"max_length = {positions + 1} is more than the model's"):
        RamoReward(model, tokenizer, max_length=positions + 1)
    heads, head_tokenizer, _ = rule_heads
    with pytest.raises(ValueError, match="is more than the model's"):
        heads.score(head_tokenizer, PROMPTS, COMPLETIONS, max_length=positions + 1)
    heads, head_tokenizer, adapter = rule_heads
    with pytest.raises(ValueError, match="this is a single-score model"):
        RamoReward(model, tokenizer, adapter=adapter)
    other = RuleAdapter(adapter.model, adapter.tokenizer, rule_ids=[f"x{i}" for i in range(6)],
                        k=2, max_length=48)
    with pytest.raises(ValueError, match="are not the reward model's"):
        RamoReward(heads, head_tokenizer, adapter=other)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        RamoReward(model, tokenizer, batch_size=0)
