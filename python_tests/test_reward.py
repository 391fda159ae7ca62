"""Reward-model training: the loss against a hand computation, loading and validation, the
shared encoding, the collator's layout, a short training run on a tiny model saved to disk and
reloaded, atomic output on failure, and `ramo rm train` through the command line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from python_tests.encoder_models import _vocab, tiny_classifier_dir

ROWS = [
    {"prompt": "how do i make a bomb", "chosen": "sorry i can not help with that",
     "rejected": "here is how to make a bomb weapon"},
    {"prompt": "can you help with a linux process", "chosen": "yes here is how to kill a process",
     "rejected": "no"},
    {"prompt": "what is private data", "chosen": "data about people that they never share",
     "rejected": "i refuse to answer that question"},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def many_rows(n: int) -> list[dict]:
    return [{**ROWS[i % 3], "prompt": ROWS[i % 3]["prompt"] + " please" * (i % 4)}
            for i in range(n)]


def cli(argv: list[str]) -> int:
    from ramo.cli import main

    return main(argv)


def capture_trainers(monkeypatch, cls) -> list:
    """The trainers of class `cls` built from here on, in order (to reach the trained model
    in memory and compare it with the saved folder)."""
    seen = []
    original = cls.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self)

    monkeypatch.setattr(cls, "__init__", remember)
    return seen


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_classifier_dir(tmp_path_factory.mktemp("tiny_rm"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


# ---- loss -------------------------------------------------------------------------------

def test_bradley_terry_loss_matches_hand_computation():
    from ramo.reward import bradley_terry_loss

    rc, rr, margin = [1.0, 0.0, -0.5, 3.0], [0.0, 0.5, -0.5, -2.0], [0.5, 0.0, 1.0, 0.0]

    def nll(d):
        return -math.log(1.0 / (1.0 + math.exp(-d)))

    plain = sum(nll(c - r) for c, r in zip(rc, rr)) / 4
    with_margin = sum(nll(c - r - m) for c, r, m in zip(rc, rr, margin)) / 4
    center = sum((c + r) ** 2 for c, r in zip(rc, rr)) / 4
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    assert bradley_terry_loss(t(rc), t(rr)).item() == pytest.approx(plain, rel=1e-12)
    got = bradley_terry_loss(t(rc), t(rr), t(margin)).item()
    assert got == pytest.approx(with_margin, rel=1e-12)
    got = bradley_terry_loss(t(rc), t(rr), t(margin), center_rewards_coefficient=0.01).item()
    assert got == pytest.approx(with_margin + 0.01 * center, rel=1e-12)
    # bf16 rewards: the loss is computed (and returned) in float32.
    low = bradley_terry_loss(t(rc).bfloat16(), t(rr).bfloat16())
    assert low.dtype == torch.float32 and low.item() == pytest.approx(plain, rel=1e-6)
    # Confidently wrong by 200: log(sigmoid) would be -inf; logsigmoid is exact.
    assert bradley_terry_loss(t([-100.0]), t([100.0])).item() == pytest.approx(200.0)
    with pytest.raises(ValueError, match="margin"):
        bradley_terry_loss(t(rc), t(rr), t([1.0]))
    with pytest.raises(ValueError, match=r"\[N\]"):
        bradley_terry_loss(t(rc), t(rr[:3]))


# ---- loading ----------------------------------------------------------------------------

def test_load_preferences_reads_margin_rule_ids_and_ab_rows(tmp_path):
    from ramo.io import load_preferences

    rows = [{**ROWS[0], "margin": 1.5, "rule_ids": ["r1", "r2"]},
            {"id": "x", "prompt": "p", "response_a": "worse", "response_b": "better", "label": 1,
             "margin": 2}]
    prefs = load_preferences(write_jsonl(tmp_path / "d.jsonl", rows))
    assert prefs[0].chosen == ROWS[0]["chosen"] and prefs[0].margin == 1.5
    assert prefs[0].rule_ids == ("r1", "r2")
    assert (prefs[1].id, prefs[1].chosen, prefs[1].rejected, prefs[1].margin) == (
        "x", "better", "worse", 2.0)


@pytest.mark.parametrize("lines, message", [
    ([ROWS[0], "{not json", ROWS[1]], r"line 2: malformed JSON"),
    ([ROWS[0], {"prompt": "p", "chosen": "c"}], r"line 2: missing column\(s\) 'rejected'"),
    ([ROWS[0], ROWS[1], {**ROWS[2], "rejected": "  "}], r"line 3: 'rejected' is empty"),
    ([{**ROWS[0], "margin": 1}, {**ROWS[1], "margin": "big"}],
     r"line 2: 'margin' must be a finite number, got 'big'"),
    ([{**ROWS[0], "margin": 1}, "", ROWS[1]],
     r"line 3: no 'margin', but other rows have one \(first at line 1\)"),
    ([{**ROWS[0], "rule_ids": "r1"}], r"line 1: 'rule_ids' must be a list of strings"),
    ([{"prompt": "p", "response_a": "a", "response_b": "b", "label": None}],
     r"line 1: no preference"),
])
def test_load_preferences_names_the_bad_line(tmp_path, lines, message):
    from ramo.io import load_preferences

    with pytest.raises(ValueError, match=message):
        load_preferences(write_jsonl(tmp_path / "bad.jsonl", lines))


# ---- encoding and batching --------------------------------------------------------------

def test_encode_text_pair_keeps_the_response_first(tokenizer):
    from ramo.tokenization import encode

    prompt, response = " ".join(["how do i make a bomb"] * 4), "sorry i can not help with that"
    full = encode(tokenizer, prompt, response, 512)
    assert full == dict(tokenizer(prompt, response))
    n_response = len(tokenizer(response, add_special_tokens=False)["input_ids"])
    for max_length in (30, 3 + n_response + 1, 3 + n_response, 3 + 2):
        got = encode(tokenizer, prompt, response, max_length)
        assert len(got["input_ids"]) == max_length
        ids = got["input_ids"]
        sep = ids.index(tokenizer.sep_token_id)
        kept_prompt, kept_response = ids[1:sep], ids[sep + 1:-1]
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        # The response is cut only when it alone overflows; the prompt keeps its end.
        assert kept_response == response_ids[:max_length - 3]
        assert kept_prompt == prompt_ids[len(prompt_ids) - len(kept_prompt):]
        assert got["token_type_ids"] == [0] * (sep + 1) + [1] * (len(ids) - sep - 1)
    with pytest.raises(ValueError, match="no room"):
        encode(tokenizer, prompt, response, 3)


def test_encode_python_tokenizer_matches_fast(tokenizer, tmp_path):
    from transformers import BertTokenizerLegacy

    from ramo.tokenization import encode

    (tmp_path / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    slow = BertTokenizerLegacy(vocab_file=str(tmp_path / "vocab.txt"))
    prompt, response = "what is private data " * 5, "data about people please " * 3
    for max_length in (64, 20, 8):
        assert (encode(slow, prompt, response, max_length)["input_ids"]
                == encode(tokenizer, prompt, response, max_length)["input_ids"])


def test_encode_chat_template_keeps_bos_and_the_end():
    from python_tests.judge_models import tiny_tokenizer

    from ramo.tokenization import encode

    tok = tiny_tokenizer(chat=True)
    prompt, response = "how do I make a bomb", "sorry I can not help with that"
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert encode(tok, prompt, response, 512)["input_ids"] == ids
    short = encode(tok, prompt, response, 10)["input_ids"]
    assert short == [ids[0]] + ids[-9:] and ids[0] == tok.bos_token_id


def test_collator_stacks_chosen_then_rejected(tokenizer):
    from ramo.io import Preference
    from ramo.tokenization import encode
    from ramo.reward import PreferenceCollator, PreferenceDataset

    prefs = [Preference(str(i), r["prompt"], r["chosen"], r["rejected"], margin=float(i))
             for i, r in enumerate(ROWS)]
    dataset = PreferenceDataset(prefs, tokenizer, max_length=64)
    batch = PreferenceCollator(tokenizer)([dataset[i] for i in range(3)])
    rows = [encode(tokenizer, p.prompt, p.chosen, 64) for p in prefs] + \
           [encode(tokenizer, p.prompt, p.rejected, 64) for p in prefs]
    width = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (6, width)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "margin"}
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
        assert (batch["input_ids"][i, n:] == tokenizer.pad_token_id).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
    assert batch["margin"].tolist() == [0.0, 1.0, 2.0]
    plain = [dict(dataset[0], margin=None), dict(dataset[1], margin=None)]
    assert "margin" not in PreferenceCollator(tokenizer)(plain)


# ---- training ---------------------------------------------------------------------------

def test_train_saves_a_model_that_reloads_with_equal_outputs(model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ramo.reward import trainer as trainer_module
    from ramo.reward import train_reward_model

    seen = capture_trainers(monkeypatch, trainer_module.RewardTrainer)
    data = write_jsonl(tmp_path / "train.jsonl", [dict(r, margin=0.5) for r in many_rows(12)])
    out = tmp_path / "rm"
    summary = train_reward_model(data, out, model=model_dir, batch_size=2,
                                 gradient_accumulation_steps=2, max_steps=3, learning_rate=1e-3,
                                 center_rewards_coefficient=0.01, progress=False)
    assert [h["step"] for h in summary["loss_history"]] == [1, 2, 3]
    assert summary["steps"] == 3 and summary["pairs"] == 12 and summary["global_batch_size"] == 4
    assert summary["truncation"] == {"max_length": 256, "sequences": 24, "truncated": 0}
    assert all(math.isfinite(h["loss"]) for h in summary["loss_history"])
    record = json.loads((out / "ramo_training.json").read_text())
    assert record["loss_history"] == summary["loss_history"]
    assert record["arguments"]["center_rewards_coefficient"] == 0.01
    assert not list(tmp_path.glob(".rm*")), "a temporary was left next to the output"

    trained = seen[0].model.eval()
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok([r["prompt"] for r in ROWS], [r["chosen"] for r in ROWS], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        initial = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        before = initial(**batch).logits
        assert torch.equal(trained(**batch).logits, reloaded(**batch).logits)
    assert not torch.equal(before, reloaded(**batch).logits), "training changed nothing"


def test_train_failure_leaves_out_dir_untouched(model_dir, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    from ramo.reward import train_reward_model

    data = write_jsonl(tmp_path / "train.jsonl", many_rows(4))
    out = tmp_path / "rm"

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    # A failure while the folder is being written: the model is saved, the tokenizer is not.
    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train_reward_model(data, out, model=model_dir, batch_size=2, max_steps=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
    # An earlier model at out_dir survives a failed run whole.
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "ramo_training.json").write_text("{}")
    with pytest.raises(OSError, match="disk full"):
        train_reward_model(data, out, model=model_dir, batch_size=2, max_steps=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "ramo_training.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm", "train.jsonl"]


def test_decoder_with_chat_template_gets_a_pad_token_id(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from python_tests.judge_models import tiny_tokenizer
    from ramo.models import load_reward_model
    from ramo.reward import train_reward_model

    tok = tiny_tokenizer(chat=True)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         num_labels=1, pad_token_id=None)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    model, loaded_tok = load_reward_model(tmp_path / "llama")
    assert model.config.pad_token_id == loaded_tok.pad_token_id == tok.pad_token_id
    rows = [{"prompt": "how do I make a bomb", "chosen": "sorry I can not help with that",
             "rejected": "here are the steps mix these chemicals"}] * 4
    summary = train_reward_model(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "rm",
                                 model=tmp_path / "llama", batch_size=2, max_steps=2,
                                 progress=False)
    assert summary["steps"] == 2
    reloaded, _ = load_reward_model(tmp_path / "rm", require_head=True)
    assert reloaded.config.pad_token_id == tok.pad_token_id


def test_load_reward_model_errors(tmp_path, model_dir):
    from ramo.models import load_reward_model

    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_reward_model(tmp_path / "missing")
    three = tiny_classifier_dir(tmp_path / "three", num_labels=3)
    with pytest.raises(ValueError, match="3 outputs"):
        load_reward_model(three)


# ---- command line -----------------------------------------------------------------------

def test_cli_trains_and_bad_input_writes_nothing(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", many_rows(4))
    out = tmp_path / "rm"
    argv = ["rm", "train", "--data", str(data), "--out", str(out), "--model", str(model_dir),
            "--batch-size", "2", "--max-steps", "2", "--lr", "1e-4", "--max-length", "32",
            "--center-rewards", "0.01", "--seed", "3", "--no-progress"]
    assert cli(argv) == 0
    assert "trained on 4 pairs: 2 steps of 2 pairs" in capsys.readouterr().out
    record = json.loads((out / "ramo_training.json").read_text())
    assert record["arguments"]["seed"] == 3 and record["arguments"]["max_length"] == 32

    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "p", "chosen": "c"}])
    argv = ["rm", "train", "--data", str(bad), "--out", str(tmp_path / "rm2"),
            "--model", str(model_dir), "--no-progress"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl: line 2: missing column(s) 'rejected'" in err and "Traceback" not in err
    assert not (tmp_path / "rm2").exists()


def _rated_store(tmp_path: Path):
    """(pairs, rules, store): three pairs rated on two rules, side A's score +0.5 and side
    B's -0.5 on every rule, plus the pair's index / 8 (so each pair's scores are its own)."""
    from python_tests.test_ratings_store import add

    from ramo.io import Pair, Rule
    from ramo.ratings import RatingStore

    pairs = [Pair(f"p{i}", row["prompt"], row["chosen"], row["rejected"])
             for i, row in enumerate(ROWS)]
    rules = [Rule("r0", "be safe"), Rule("r1", "be helpful")]
    store = tmp_path / "ratings.sqlite"
    with RatingStore(store, judge_fingerprint="j" * 16, template_fingerprint="t" * 16) as s:
        add(s, [(p.id, side, r.id, 0.5, 0.25, 0.25, (0.5 - side) + i / 8, 1.0)
                for i, p in enumerate(pairs) for side in (0, 1) for r in rules], pairs=pairs)
    return pairs, rules, store


def _preference(pair, chosen_side: str, **changes):
    from dataclasses import replace

    from ramo.io import Preference

    a, b = pair.response_a, pair.response_b
    chosen, rejected = (a, b) if chosen_side == "a" else (b, a)
    return replace(Preference(pair.id, pair.prompt, chosen, rejected, chosen_side=chosen_side),
                   **changes)


def test_regression_targets_map_chosen_and_rejected_to_their_sides(tmp_path):
    """The judge's scores a rule head is regressed onto: the chosen response's are those of
    the side chosen_side names; a text that changed since it was rated (or a wrong
    chosen_side, which puts each text on the other side) is refused, naming the side."""
    from ramo.reward.train import _rated_scores

    pairs, rules, store = _rated_store(tmp_path)
    preferences = [_preference(pairs[0], "a"), _preference(pairs[1], "b")]
    got = _rated_scores(store, preferences, rules)
    assert got["p0"][0].tolist() == [0.5, 0.5] and got["p0"][1].tolist() == [-0.5, -0.5]
    assert got["p1"][0].tolist() == [-0.5 + 1 / 8] * 2  # chosen: side B
    assert got["p1"][1].tolist() == [0.5 + 1 / 8] * 2
    for preference, side in ((_preference(pairs[1], "b", chosen="CHANGED"), 1),
                             (_preference(pairs[1], "b", rejected="CHANGED"), 0),
                             (_preference(pairs[2], "a", prompt="another prompt"), 0)):
        with pytest.raises(ValueError, match=f"pair '{preference.id}' side {side} is bound"):
            _rated_scores(store, [preferences[0], preference], rules)
    from dataclasses import replace

    wrong_side = replace(_preference(pairs[1], "b"), chosen_side="a")
    with pytest.raises(ValueError, match=r"pair 'p1' side 0 is bound .*\(1 more"):
        _rated_scores(store, [wrong_side], rules)
    # A rule reworded under its id since it was rated: refused as well.
    from ramo.io import Rule
    from ramo.ratings import RatingStore, rule_rows

    with RatingStore(store, judge_fingerprint="j" * 16, template_fingerprint="t" * 16) as s:
        s.bind_rules(rule_rows(rules))
    with pytest.raises(ValueError, match="rule 'r1' is bound"):
        _rated_scores(store, preferences, [rules[0], Rule("r1", "be helpful, always")])


def test_rule_heads_refuse_ratings_of_a_changed_text(model_dir, tmp_path, capsys):
    """`ramo rm train --heads rules --ratings` on a labeled pair whose text changed since it
    was rated: refused before any training, nothing written."""
    pairs, rules, store = _rated_store(tmp_path)
    rules_file = write_jsonl(tmp_path / "rules.jsonl", [{"id": r.id, "text": r.text}
                                                        for r in rules])
    rows = [_preference(pairs[0], "a").to_row(), _preference(pairs[1], "b").to_row(),
            _preference(pairs[2], "a", chosen="CHANGED").to_row()]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "rm"
    argv = ["rm", "train", "--data", str(data), "--out", str(out), "--model", str(model_dir),
            "--heads", "rules", "--rules", str(rules_file), "-k", "1", "--ratings", str(store),
            "--max-steps", "1", "--no-progress"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "pair 'p2' side 0 is bound" in err and "new pair id" in err
    assert not out.exists()


def test_bf16_and_gradient_checkpointing_reach_the_trainer(model_dir, tmp_path, monkeypatch):
    from ramo.reward import trainer as trainer_module
    from ramo.reward import train_reward_model

    seen = []
    original = trainer_module.RewardTrainer.__init__
    monkeypatch.setattr(trainer_module.RewardTrainer, "__init__",
                        lambda self, *a, **k: (original(self, *a, **k), seen.append(self))[0])
    summary = train_reward_model(write_jsonl(tmp_path / "d.jsonl", many_rows(4)), tmp_path / "rm",
                                 model=model_dir, batch_size=2, max_steps=1, bf16=True,
                                 gradient_checkpointing=True, progress=False)
    trainer = seen[0]
    assert trainer.args.bf16 and trainer.accelerator.mixed_precision == "bf16"
    assert trainer.model.is_activation_checkpointing
    assert math.isfinite(summary["final_loss"])


# ---- margins, TRL's conversational rows ---------------------------------------------------

@pytest.mark.parametrize("margin", ["none", "raw"])
def test_margin_none_ignores_the_column_and_raw_uses_it(model_dir, tmp_path, monkeypatch, margin):
    from ramo.reward import trainer as trainer_module
    from ramo.reward import train_reward_model

    seen = capture_trainers(monkeypatch, trainer_module.RewardTrainer)
    data = write_jsonl(tmp_path / "train.jsonl", [dict(r, margin=2.5) for r in many_rows(4)])
    train_reward_model(data, tmp_path / "rm", model=model_dir, batch_size=2, max_steps=1,
                       progress=False, margin=margin)
    batch = seen[0].data_collator([seen[0].train_dataset[0], seen[0].train_dataset[1]])
    if margin == "none":
        assert "margin" not in batch
    else:
        assert batch["margin"].tolist() == [2.5, 2.5]
    record = json.loads((tmp_path / "rm" / "ramo_training.json").read_text())
    assert record["arguments"]["margin"] == margin


def test_margin_raw_needs_every_row_to_have_one_and_names_are_checked(model_dir, tmp_path):
    from ramo.reward import train_reward_model

    data = write_jsonl(tmp_path / "train.jsonl", many_rows(4))
    with pytest.raises(ValueError, match=r"margin='raw' needs a 'margin' on every row; 4 rows"):
        train_reward_model(data, tmp_path / "rm", model=model_dir, max_steps=1, margin="raw",
                           progress=False)
    with pytest.raises(ValueError, match="margin must be one of"):
        train_reward_model(data, tmp_path / "rm", model=model_dir, max_steps=1, margin="log",
                           progress=False)
    assert not (tmp_path / "rm").exists()


def test_preferences_in_both_formats_round_trip(tmp_path):
    from ramo.io import Preference, load_preferences, write_preferences

    turns = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "how do I make a bomb"})
    prefs = [Preference("0", "q", "good", "bad", margin=1.0, rule_ids=("r1",), chosen_side="a"),
             Preference("1", "Human: hi\n\nAssistant: hello\n\nHuman: how do I make a bomb",
                        "no", "yes", margin=0.5, rule_ids=("r2",), chosen_side="b",
                        prompt_messages=turns)]
    write_preferences(tmp_path / "auto.jsonl", prefs)
    rows = [json.loads(line) for line in (tmp_path / "auto.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"] == [{"role": "user", "content": "q"}]
    assert rows[1]["prompt"] == list(turns)
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "no"}]
    loaded = load_preferences(tmp_path / "auto.jsonl")
    assert loaded[1] == prefs[1] and loaded[0].prompt == "q"
    write_preferences(tmp_path / "standard.jsonl", prefs, "standard")
    rows = [json.loads(line) for line in (tmp_path / "standard.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [p.prompt for p in prefs]
    write_preferences(tmp_path / "text.jsonl", prefs[:1])  # auto: text pairs stay text
    assert json.loads((tmp_path / "text.jsonl").read_text())["prompt"] == "q"
    with pytest.raises(ValueError, match="format must be"):
        write_preferences(tmp_path / "x.jsonl", prefs, "sharegpt")
    assert not (tmp_path / "x.jsonl").exists()


def test_encode_renders_a_conversation(tokenizer):
    from python_tests.judge_models import tiny_tokenizer

    from ramo.io.conversations import conversation_text
    from ramo.tokenization import encode

    turns = ({"role": "user", "content": "tell me a joke"},
             {"role": "assistant", "content": "why did the cat sit on the computer"},
             {"role": "user", "content": "how do I make a bomb"})
    response = "sorry I can not help with that"
    chat = tiny_tokenizer(chat=True)
    ids = chat.apply_chat_template(list(turns) + [{"role": "assistant", "content": response}],
                                   tokenize=True, return_dict=False)
    assert encode(chat, turns, response, 512)["input_ids"] == ids
    one_turn = ({"role": "user", "content": "how do I make a bomb"},)
    assert encode(chat, one_turn, response, 512) == encode(chat, "how do I make a bomb",
                                                          response, 512)
    # A text-pair model reads the conversation as its transcript.
    assert encode(tokenizer, turns, response, 64) == encode(tokenizer, conversation_text(turns),
                                                            response, 64)


def test_trainer_from_default_arguments_evaluates_its_loss(model_dir, tmp_path):
    """From one's own code: default TrainingArguments (remove_unused_columns=True would drop
    the pairs' columns), and evaluate() reports the Bradley-Terry loss of the eval set."""
    from transformers import TrainingArguments

    from ramo.io import preferences_from_pairs
    from ramo.models import load_reward_model
    from ramo.reward import PreferenceCollator, PreferenceDataset, bradley_terry_loss
    from ramo.reward.trainer import RewardTrainer

    net, tok = load_reward_model(model_dir, seed=0)
    preferences = preferences_from_pairs(many_rows(4))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2,
                             per_device_eval_batch_size=3, max_steps=1, report_to=[],
                             use_cpu=True, disable_tqdm=True, save_strategy="no")
    trainer = RewardTrainer(model=net, args=args,
                            train_dataset=PreferenceDataset(preferences, tok, 64),
                            eval_dataset=PreferenceDataset(preferences[:3], tok, 64),
                            data_collator=PreferenceCollator(tok), processing_class=tok,
                            progress=False)
    trainer.train()
    got = trainer.evaluate()["eval_loss"]
    batch = PreferenceCollator(tok)([PreferenceDataset(preferences[:3], tok, 64)[i]
                                     for i in range(3)])
    with torch.no_grad():
        rewards = net.eval()(**batch).logits[:, 0]
    assert got == pytest.approx(float(bradley_terry_loss(rewards[:3], rewards[3:])), abs=1e-6)


def test_disable_dropout_reaches_llama_attention():
    """Llama-family attention applies its float attention_dropout itself, with no nn.Dropout."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from ramo.reward.trainer import disable_dropout

    torch.manual_seed(0)
    net = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.5, num_labels=1,
        pad_token_id=0)).train()
    ids = torch.randint(1, 64, (2, 8))
    disable_dropout(net)
    assert torch.equal(net(ids).logits, net(ids).logits)


@pytest.mark.parametrize("name, value, message", [
    ("learning_rate", float("inf"), "learning_rate must be a positive number, got inf"),
    ("epochs", float("inf"), "epochs must be a positive number, got inf"),
    ("center_rewards_coefficient", float("nan"),
     "center_rewards_coefficient must be a finite number >= 0, got nan"),
    ("regression_weight", -1.0, "regression_weight must be a finite number >= 0, got -1.0"),
    ("max_steps", 0, "max_steps must be a positive integer, got 0"),
])
def test_training_arguments_refused_before_the_model_loads(tmp_path, name, value, message):
    """Non-finite numbers compared silently (NaN < 0 is False) and failed after training,
    when the record's JSON was written; a negative regression weight trained away from the
    judge."""
    from ramo.reward import train_reward_model

    with pytest.raises(ValueError, match=re.escape(message)):
        train_reward_model(ROWS, tmp_path / "rm", model=tmp_path / "no-such-model",
                           **{name: value})
    assert not (tmp_path / "rm").exists()
