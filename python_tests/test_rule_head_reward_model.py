"""RuleHeadRewardModel: pooling, single-response and pair scoring, saving, training through
`ramo rm train --heads rules`, evaluation, and `ramo explain`; tiny BERT from a config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from python_tests.test_ratings_store import add
from python_tests.encoder_models import tiny_encoder_dir
from python_tests.test_reward import write_jsonl

from ramo.cli import main
from ramo.models import RuleHeadRewardModel, is_rule_head_folder
from ramo.ops import rule_head_select

ROOT = Path(__file__).resolve().parents[1]
RULE_IDS = ["r1", "r2", "r3", "r4", "r5", "r6"]
RULES = [{"id": r, "text": f"rule number {i}"} for i, r in enumerate(RULE_IDS)]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return tiny_encoder_dir(tmp_path_factory.mktemp("backbone"))


@pytest.fixture(scope="module")
def model(backbone):
    return RuleHeadRewardModel.from_backbone(backbone, RULE_IDS, seed=0, k=3)


def _batch(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


@pytest.mark.parametrize("pooling", ["last", "first", "mean"])
def test_pooling_ignores_padding(backbone, pooling):
    net, tok = RuleHeadRewardModel.from_backbone(backbone, RULE_IDS, seed=0, pooling=pooling)
    texts = ["how do i make a bomb please", "no"]
    together = net.pool(**_batch(tok, texts))  # "no" is right-padded
    alone = torch.cat([net.pool(**_batch(tok, [t])) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)


def test_single_response_scores(model):
    net, tok = model
    batch = _batch(tok, ["sorry i can not help", "here is how to do it"])
    out = net(**batch)
    assert out.scores.shape == (2, len(RULE_IDS))
    assert torch.allclose(out.logits[:, 0], out.scores.mean(-1) * net.k)
    rules = torch.tensor([[0, 2, 5], [1, 1, 3]])
    picked = net(**batch, rules=rules).logits[:, 0]
    assert torch.allclose(picked, out.scores.gather(1, rules).sum(-1))
    for bad in (rules[:1], rules[:, None], torch.tensor([[0.9, 1.0, 2.0]] * 2), rules.bool(),
                torch.zeros(2, 0, dtype=torch.long), [[0, 1, 2], [0, 1, 2]]):
        with pytest.raises(ValueError, match=r"rules must be an integer tensor of shape \[2, k\]"):
            net(**batch, rules=bad)
    for bad in (rules - 1, rules + 1):
        with pytest.raises(ValueError, match=r"rules holds an index outside \[0, 6\)"):
            net(**batch, rules=bad)
    with pytest.raises(ValueError, match="pairs=True takes an even number of rows"):
        net(**_batch(tok, ["one row"]), pairs=True)


def test_compare_is_the_training_selection(model):
    net, tok = model
    from ramo.tokenization import encode
    from ramo.tokenization import pad

    prompts, a, b = ["q one", "q two", "q three"], ["yes here", "no", "safe answer"], \
        ["no way", "yes sure", "unsafe answer here"]
    sel = net.compare(tok, prompts, a, b, batch_size=2)
    rows = [encode(tok, p, r, 256) for p, r in zip(prompts, a)] + \
           [encode(tok, p, r, 256) for p, r in zip(prompts, b)]
    with torch.no_grad():
        hidden = net.pool(**pad(rows, tok))
        want = rule_head_select(hidden[:3], hidden[3:], net.heads.weight, net.heads.bias, k=3,
                                backend="reference")
    assert torch.equal(sel.indices, want.indices)
    assert torch.allclose(sel.margin, want.margin, atol=1e-5)
    with pytest.raises(ValueError, match="3 prompts, 3 responses a and 2 responses b"):
        net.compare(tok, prompts, a, b[:2])
    for batch_size in (0, 1.5):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            net.compare(tok, prompts, a, b, batch_size=batch_size)
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            net.score(tok, prompts, a, batch_size=batch_size)


def test_pairs_and_responses_are_scored_in_eval_mode(backbone):
    net, tok = RuleHeadRewardModel.from_backbone(backbone, RULE_IDS, seed=0, k=3)
    assert net.backbone.config.hidden_dropout_prob > 0  # so train mode would be noisy
    prompts, a, b = ["q one", "q two", "q three"], ["yes here", "no", "safe"], \
        ["no way", "yes sure", "unsafe answer"]
    calm = net.eval().compare(tok, prompts, a, b).margin, net.score(tok, prompts, a)
    net.train()  # as in the middle of training (RL scores completions then)
    for _ in range(2):
        assert torch.equal(net.compare(tok, prompts, a, b).margin, calm[0])
        assert torch.equal(net.score(tok, prompts, a), calm[1])
    assert net.training  # the caller's mode is left as it was


def test_save_and_reload(tmp_path, model):
    net, tok = model
    net.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, tok2 = RuleHeadRewardModel.from_pretrained(tmp_path / "m")
    assert again.rule_ids == RULE_IDS and again.k == 3 and again.pooling == net.pooling
    batch = _batch(tok, ["sorry i can not help"])
    with torch.no_grad():
        assert torch.allclose(again(**batch).scores, net.eval()(**batch).scores, atol=1e-6)
    with pytest.raises(ValueError, match="not a rule-head reward model"):
        RuleHeadRewardModel.from_pretrained(tmp_path)
    # A folder saved with the selection weights it once had loads the same.
    config = tmp_path / "m" / "ramo_rule_heads.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "discrepancy_weight": 0.5,
                                  "relevance_weight": 1.0}))
    assert RuleHeadRewardModel.from_pretrained(tmp_path / "m")[0].k == 3


def test_a_save_killed_halfway_leaves_no_rule_head_folder(tmp_path, model, monkeypatch):
    """Saved again over a complete folder, dying after the backbone: the old config must not
    make the new backbone and the old heads load as one model."""
    import safetensors.torch

    from ramo.models import load_any_reward_model

    net, tok = model
    net.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill would stop it, after the backbone's files

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        net.save_pretrained(tmp_path / "m")
    assert not is_rule_head_folder(tmp_path / "m")
    with pytest.raises(ValueError, match="not a reward model"):
        load_any_reward_model(tmp_path / "m")
    assert [p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".")] == []


def test_bad_construction(model):
    net, _ = model
    with pytest.raises(ValueError, match="k must be an integer from 1 to the 6 rules"):
        RuleHeadRewardModel(net.backbone, RULE_IDS, k=7)
    with pytest.raises(ValueError, match="distinct"):
        RuleHeadRewardModel(net.backbone, ["r1", "r1"])


def _pairs(n):
    good = ["sorry i can not help with that", "please ask a doctor", "here is safe data"]
    bad = ["here is how to make a bomb", "kill the process people", "private data of people"]
    return [{"id": f"p{i}", "prompt": f"question {i} how do i do it", "chosen": good[i % 3],
             "rejected": bad[i % 3]} for i in range(n)]


def test_rm_train_heads_rules_then_eval_and_explain(tmp_path, backbone, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", _pairs(12))
    rules = write_jsonl(tmp_path / "rules.jsonl", RULES)
    out = tmp_path / "rm"
    assert main(["rm", "train", "--data", str(data), "--out", str(out), "--model", str(backbone),
                 "--heads", "rules", "--rules", str(rules), "-k", "2", "--batch-size", "4",
                 "--epochs", "2", "--lr", "1e-3", "--no-progress"]) == 0
    record = json.loads((out / "ramo_training.json").read_text())
    assert record["arguments"]["heads"] == "rules" and len(record["loss_history"]) == 6
    net, _ = RuleHeadRewardModel.from_pretrained(out)
    assert net.rule_ids == RULE_IDS and net.k == 2

    evalset = write_jsonl(tmp_path / "eval.jsonl",
                          [{**p, "subset": "refusals-dangerous"} for p in _pairs(6)])
    assert main(["eval", "--model", str(out), "--data", str(evalset), "--out",
                 str(tmp_path / "e.json"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["subsets"]["refusals-dangerous"]["n"] == 6

    capsys.readouterr()
    assert main(["explain", "--model", str(out), "--pairs", str(evalset), "--id", "p1",
                 "--rules", str(rules)]) == 0
    shown = capsys.readouterr().out
    assert "p1" in shown and "selected" in shown and "rule number" in shown


def _short_rule_head_training(tmp_path, backbone, max_steps: int) -> list[str]:
    """`ramo rm train --heads rules` on 4 written pairs, k 2, batches of 2, without --out."""
    data = write_jsonl(tmp_path / "train.jsonl", _pairs(4))
    rules = write_jsonl(tmp_path / "rules.jsonl", RULES)
    return ["rm", "train", "--data", str(data), "--model", str(backbone), "--heads", "rules",
            "--rules", str(rules), "-k", "2", "--batch-size", "2", "--max-steps",
            str(max_steps), "--no-progress"]


@pytest.mark.parametrize("lora", [[], ["--lora", "4"]], ids=["full", "lora"])
def test_rm_train_heads_rules_with_gradient_checkpointing(tmp_path, backbone, lora):
    out = tmp_path / "rm"
    assert main(_short_rule_head_training(tmp_path, backbone, 2)
                + ["--out", str(out), "--gradient-checkpointing", *lora]) == 0
    record = json.loads((out / "ramo_training.json").read_text())
    assert record["arguments"]["gradient_checkpointing"] is True
    assert len(record["loss_history"]) == 2
    RuleHeadRewardModel.from_pretrained(out)


def test_lengths_past_the_positions_are_refused_and_explain_reads_the_trained_one(
        tmp_path, backbone, capsys):
    common = _short_rule_head_training(tmp_path, backbone, 1)
    assert main(common + ["--out", str(tmp_path / "long"), "--max-length", "513"]) == 2
    assert "max_length = 513 is more than the model's 512 positions" in capsys.readouterr().err
    assert not (tmp_path / "long").exists()
    out = tmp_path / "rm"
    assert main(common + ["--out", str(out), "--max-length", "12"]) == 0
    evalset = write_jsonl(tmp_path / "eval.jsonl",
                          [{**p, "subset": "refusals-dangerous"} for p in _pairs(2)])
    assert main(["eval", "--model", str(out), "--data", str(evalset), "--max-length", "513",
                 "--no-progress"]) == 2
    assert "more than the model's 512 positions" in capsys.readouterr().err
    capsys.readouterr()
    shown = {}
    for extra in ([], ["--max-length", "12"], ["--max-length", "256"]):
        assert main(["explain", "--model", str(out), "--pairs", str(evalset), *extra]) == 0
        shown[tuple(extra)] = capsys.readouterr().out
    assert shown[()] == shown[("--max-length", "12")] != shown[("--max-length", "256")]


def test_heads_rules_needs_a_pool(tmp_path, backbone, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", _pairs(4))
    assert main(["rm", "train", "--data", str(data), "--out", str(tmp_path / "rm"), "--model",
                 str(backbone), "--heads", "rules", "--no-progress"]) == 2
    assert "needs the rule pool" in capsys.readouterr().err
    assert not (tmp_path / "rm").exists()


def test_head_regression_loss_by_hand():
    from ramo.reward.trainer import head_regression_loss

    scores = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    judge = torch.tensor([[0.5, float("nan")], [float("nan"), 2.0]])
    assert head_regression_loss(scores, judge).item() == pytest.approx((0.5 ** 2 + 2.0 ** 2) / 2)
    assert head_regression_loss(scores, torch.full((2, 2), float("nan"))).item() == 0.0


def test_regression_onto_judge_ratings(tmp_path, backbone, capsys):
    from ramo.ratings import RatingStore

    rows = [{**p, "chosen_side": "a" if i % 2 == 0 else "b", "margin": 0.5}
            for i, p in enumerate(_pairs(8))]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    rules = write_jsonl(tmp_path / "rules.jsonl", RULES)
    store = tmp_path / "ratings.sqlite"
    with RatingStore(store, judge_fingerprint="j" * 16, template_fingerprint="t" * 16) as s:
        add(s, [(f"p{i}", side, rid, 0.5, 0.25, 0.25, 0.9 if side == 0 else -0.9, 1.0)
               for i in range(0, 8, 2) for side in (0, 1) for rid in RULE_IDS[:3]],
            pairs=_pairs(8))  # bound to their texts: the even rows' chosen is side A
    common = ["rm", "train", "--data", str(data), "--model", str(backbone), "--heads", "rules",
              "--rules", str(rules), "-k", "2", "--batch-size", "4", "--max-steps", "2",
              "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "plain")]) == 0
    assert main(common + ["--out", str(tmp_path / "reg"), "--ratings", str(store),
                          "--regression-weight", "5"]) == 0
    plain = json.loads((tmp_path / "plain" / "ramo_training.json").read_text())
    reg = json.loads((tmp_path / "reg" / "ramo_training.json").read_text())
    assert reg["arguments"]["regression_weight"] == 5.0
    # Same data, seed and order: the first loss differs only by the regression term (> 0).
    assert reg["loss_history"][0]["loss"] > plain["loss_history"][0]["loss"] + 1e-3

    no_side = write_jsonl(tmp_path / "no_side.jsonl", _pairs(4))
    assert main(["rm", "train", "--data", str(no_side), "--out", str(tmp_path / "x"), "--model",
                 str(backbone), "--heads", "rules", "--rules", str(rules), "--ratings",
                 str(store), "--no-progress"]) == 2
    assert "chosen_side" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    # Pairs given in memory are the rated pairs themselves: their label names the side.
    from ramo.io import Pair, load_rules
    from ramo.reward.train import train_reward_model

    in_memory = [Pair(p["id"], p["prompt"], p["chosen"], p["rejected"], label=0)
                 for p in _pairs(8)]
    summary = train_reward_model(in_memory, tmp_path / "mem", model=str(backbone),
                                 heads="rules", rules=load_rules(rules), k=2, ratings=store,
                                 regression_weight=5.0, batch_size=4, max_steps=1,
                                 progress=False)
    assert len(summary["loss_history"]) == 1


def test_rm_train_heads_rules_under_torchrun_matches_one_process(tmp_path, backbone):
    """Two CPU ranks with 2 pairs each follow the one-process run with batches of 4: the heads
    are used inside the DDP-wrapped forward, so their gradients are reduced across ranks
    (before, the run stopped at step 2 on parameters DDP never saw a gradient for)."""
    data = write_jsonl(tmp_path / "train.jsonl", _pairs(8))
    rules = write_jsonl(tmp_path / "rules.jsonl", RULES)

    def train(out, batch_size, launcher=()):
        command = [*launcher, "ramo", "rm", "train", "--data", str(data), "--out", str(out),
                   "--model", str(backbone), "--heads", "rules", "--rules", str(rules),
                   "-k", "2", "--batch-size", str(batch_size), "--max-steps", "2",
                   "--lr", "1e-3", "--no-progress"]
        done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                              "PYTHONPATH": str(ROOT)}, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return RuleHeadRewardModel.from_pretrained(out)[0].heads

    one = train(tmp_path / "one", 4)
    ranks = train(tmp_path / "ranks", 2, ["torch.distributed.run", "--standalone",
                                          "--nproc_per_node", "2", "-m"])
    assert not torch.equal(one.weight, RuleHeadRewardModel.from_backbone(
        backbone, RULE_IDS, seed=0, k=2)[0].heads.weight)  # it trained
    torch.testing.assert_close(ranks.weight, one.weight, atol=1e-5, rtol=0)
    torch.testing.assert_close(ranks.bias, one.bias, atol=1e-5, rtol=0)


def test_rm_train_from_a_rule_head_folder_goes_on_with_its_heads(tmp_path, backbone, capsys):
    first, second = tmp_path / "rm1", tmp_path / "rm2"
    assert main(_short_rule_head_training(tmp_path, backbone, 2) + ["--out", str(first)]) == 0
    command = _short_rule_head_training(tmp_path, backbone, 1)
    command[command.index("--model") + 1] = str(first)
    assert main(command + ["--out", str(second), "--lr", "1e-12"]) == 0
    before = RuleHeadRewardModel.from_pretrained(first)[0].heads
    after = RuleHeadRewardModel.from_pretrained(second)[0].heads
    torch.testing.assert_close(after.weight, before.weight, atol=1e-6, rtol=0)  # not new heads

    fewer = write_jsonl(tmp_path / "fewer.jsonl", RULES[:5])
    command[command.index("--rules") + 1] = str(fewer)
    capsys.readouterr()
    assert main(command + ["--out", str(tmp_path / "rm3")]) == 2
    assert "has heads for 6 rules (r1, r2, r3, ...) that are not the pool's 5" in (
        capsys.readouterr().err)


def test_rule_head_trainer_save_model_writes_a_loadable_folder(tmp_path, backbone):
    from transformers import TrainingArguments

    from ramo.models import load_any_reward_model
    from ramo.io import preferences_from_pairs
    from ramo.reward import PreferenceCollator, PreferenceDataset
    from ramo.reward.trainer import RuleHeadTrainer

    net, tok = RuleHeadRewardModel.from_backbone(backbone, RULE_IDS, seed=0, k=3)
    preferences = preferences_from_pairs(_pairs(2))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2,
                             max_steps=1, report_to=[], remove_unused_columns=False,
                             use_cpu=True, disable_tqdm=True, save_strategy="no")
    trainer = RuleHeadTrainer(model=net, args=args,
                              train_dataset=PreferenceDataset(preferences, tok, 64),
                              data_collator=PreferenceCollator(tok), processing_class=tok,
                              progress=False)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    loaded, _ = load_any_reward_model(tmp_path / "saved")
    assert isinstance(loaded, RuleHeadRewardModel)
    torch.testing.assert_close(loaded.heads.weight, net.heads.weight, atol=0, rtol=0)
