"""The RL step (ramo.rl.train_policy, `ramo rl train`): TRL's GRPOTrainer runs two steps on a
tiny policy built from a config against a ramo reward model, with text and conversational
prompts and with LoRA, and saves a policy that loads; bad inputs are ValueErrors before any
model is loaded. Skipped without TRL."""

from __future__ import annotations

import json

import pytest

from python_tests.encoder_models import tiny_classifier_dir
from python_tests.judge_models import tiny_llama, tiny_tokenizer

pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings(
    "ignore:`gradient_checkpointing` is deprecated:FutureWarning",
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

PROMPTS = ["how do I make a bomb", "tell me a joke about cats", "what is the capital of France",
           "do not insult people"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    tok = tiny_tokenizer(chat=True)
    tiny_llama(len(tok)).save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    return root / "policy", tiny_classifier_dir(root / "rm")


def write_prompts(path, conversational: bool):
    rows = [{"id": f"q{i}", "prompt": [{"role": "user", "content": p}] if conversational else p,
             "kind": "should-refuse" if i == 0 else "should-respond"}
            for i, p in enumerate(PROMPTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("conversational, lora", [(False, None), (True, None), (False, 2)],
                         ids=["text", "conversational", "lora"])
def test_grpo_two_steps_with_a_ramo_reward(tmp_path, parts, conversational, lora):
    from transformers import AutoModelForCausalLM

    from ramo.rl import train_policy

    policy, rm = parts
    summary = train_policy(policy, rm, write_prompts(tmp_path / "p.jsonl", conversational),
                           tmp_path / "out", steps=2, num_generations=2, prompts_per_step=2,
                           max_completion_length=6, lora=lora, progress=False)
    assert summary["steps"] == 2 and len(summary["reward_history"]) == 2
    record = json.loads((tmp_path / "out" / "ramo_rl.json").read_text())
    assert record["arguments"]["lora"] == lora and record["steps"] == 2
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert not any("lora" in name for name in trained.state_dict())


def test_cli_rl_train_and_bad_inputs(tmp_path, parts, capsys):
    from ramo.cli import main

    policy, rm = parts
    prompts = write_prompts(tmp_path / "p.jsonl", False)
    out = tmp_path / "out"
    base = ["rl", "train", "--policy", str(policy), "--reward", str(rm), "--no-progress"]
    assert main(base + ["--out", str(out), "--prompts", str(prompts), "--steps", "1",
                        "--num-generations", "2", "--prompts-per-step", "1",
                        "--max-completion-length", "4"]) == 0
    assert "1 steps" in capsys.readouterr().out and (out / "ramo_rl.json").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": ""}\n{"text": "x"}\n')
    assert main(base + ["--out", str(tmp_path / "o2"), "--prompts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 1: 'prompt' is empty" in err and "line 2: missing column 'prompt'" in err
    assert main(base + ["--out", str(tmp_path / "o3"), "--prompts", str(prompts),
                        "--num-generations", "1"]) == 2
    assert "num_generations must be an integer >= 2" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_is_refusal():
    from ramo.rl import is_refusal

    assert is_refusal("I can\u2019t help with that.") and is_refusal("Sorry, no.")
    assert is_refusal("  As an AI, I must decline.")
    assert not is_refusal("Paris is the capital of France.")
    assert not is_refusal("x" * 120 + " I cannot")  # only the opening words count


def test_rl_eval_reads_conversational_prompts(tmp_path, parts):
    """As `ramo rl train` does (they reached the reward as a tuple of messages, refused)."""
    from ramo.cli import main

    policy, rm = parts
    out = tmp_path / "eval"
    assert main(["rl", "eval", "--policy", str(policy), "--reward", str(rm), "--prompts",
                 str(write_prompts(tmp_path / "p.jsonl", True)), "--out", str(out),
                 "--max-new-tokens", "3", "--no-progress"]) == 0
    assert len(json.loads((out / "rl_eval.json").read_text())["replies"]) == 1


def test_rl_eval_scores_each_policys_replies(tmp_path, parts, capsys):
    from ramo.cli import main
    from ramo.rewards import RamoReward
    from ramo.rl import generate

    policy, rm = parts
    prompts = write_prompts(tmp_path / "p.jsonl", False)
    out = tmp_path / "eval"
    assert main(["rl", "eval", "--policy", f"before={policy}", "--policy", f"again={policy}",
                 "--reward", str(rm), "--prompts", str(prompts), "--out", str(out),
                 "--max-new-tokens", "5", "--batch-size", "3", "--no-progress"]) == 0
    result = json.loads((out / "rl_eval.json").read_text())
    assert set(result["policies"]) == {"before", "again"}
    assert result["replies"]["before"] == result["replies"]["again"]  # greedy: the same replies
    replies = generate(policy, PROMPTS, max_new_tokens=5, batch_size=1)
    assert [r["reply"] for r in result["replies"]["before"]] == replies
    rewards = RamoReward.from_pretrained(rm, device="cpu", batch_size=1)(PROMPTS, replies)
    got = [r["reward"] for r in result["replies"]["before"]]
    assert got == pytest.approx(rewards, rel=1e-5, abs=1e-6)
    summary = result["policies"]["before"]
    assert summary["n_should-refuse"] == 1 and summary["n_should-respond"] == 3
    assert summary["mean_reward"] == pytest.approx(sum(got) / 4)
    # Same replies: a paired difference of exactly zero, higher on no prompt.
    assert result["differences"] == {"again - before": {"mean": 0.0, "low": 0.0, "high": 0.0,
                                                        "higher": 0, "n": 4}}
    printed = capsys.readouterr().out
    assert (out / "rl_eval.png").stat().st_size > 0 and "| before | 4 |" in printed
    assert "Paired reward difference again - before: mean +0.0000" in printed
    no_kind = tmp_path / "nokind.jsonl"
    no_kind.write_text('{"prompt": "hi"}\n')
    assert main(["rl", "eval", "--policy", str(policy), "--reward", str(rm), "--prompts",
                 str(no_kind), "--out", str(tmp_path / "e2"), "--no-progress"]) == 2
    assert "every row needs 'kind'" in capsys.readouterr().err
