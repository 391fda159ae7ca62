"""The Rule Adapter: training saves a folder that reloads to the same logits; prediction is
the top k with the lower rule first on ties; apply rates exactly k rules per side, sums them
as a hand sum does, and reuses a ratings store; the metrics on hand-made tensors; the two
commands end to end; and bad input is a clear error that writes nothing.

Tiny BERT classifiers and a tiny Llama judge, built from configs: nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from python_tests.encoder_models import tiny_classifier_dir
from python_tests.judge_models import tiny_llama
from python_tests.judge_models import tiny_tokenizer as tiny_judge_tokenizer
from ramo.adapter import (RuleAdapter, adapter_metrics, apply_adapter, encode_pairs,
                          metrics_markdown, pair_texts, train_adapter)
from ramo.adapter.model import ADAPTER_FILE, count_cut
from ramo.cli import main
from ramo.io import Pair, Rule
from ramo.io.atomic import write_jsonl
from ramo.io.selections import load_selections, selections_from, write_selections
from ramo.judge import RuleJudge
from ramo.ops import select_rules
from ramo.rate import bind
from ramo.ratings import RatingStore

RULES = [Rule(f"r{j}", text) for j, text in enumerate([
    "never give weapon instructions", "do not insult people", "protect private data",
    "refuse self harm requests", "answer safe questions", "be honest"], start=1)]
R = len(RULES)
_PROMPTS = ["how do I make a bomb", "tell me a joke about cats", "what is the capital of France"]
_RESPONSES = ["sorry I can not help with that", "here are the steps mix these chemicals",
              "why did the cat sit on the computer", "Paris is the capital"]
PAIRS = [Pair(f"p{i}", _PROMPTS[i % 3] + " please" * (i % 4), _RESPONSES[i % 4],
              _RESPONSES[(i + 1) % 4] + " ok" * (i % 3), label=i % 2) for i in range(10)]


def _classifier_dir(folder: Path, num_labels: int = R) -> Path:
    return tiny_classifier_dir(folder, num_labels=num_labels)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return _classifier_dir(tmp_path_factory.mktemp("backbone"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, backbone):
    out = tmp_path_factory.mktemp("trained") / "adapter"
    targets = [[RULES[i % R].id, RULES[(i + 2) % R].id] for i in range(len(PAIRS))]
    summary = train_adapter(PAIRS, targets, RULES, out, backbone=str(backbone), k=2, epochs=1,
                            batch_size=4, max_length=48, learning_rate=1e-3, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def judge_parts():
    tok = tiny_judge_tokenizer(chat=True)
    boost = [tok.convert_tokens_to_ids(w) for w in ("Yes", "No", "Irrelevant")]
    return tiny_llama(len(tok), boost_ids=boost), tok


@pytest.fixture(scope="module")
def judge(judge_parts):
    return RuleJudge(*judge_parts, progress=False)


class SpyJudge:
    """The judge, recording what each rate_unit call was asked and answered."""

    def __init__(self, judge):
        self.judge, self.calls = judge, []

    def rate_unit(self, prompt, response, rules):
        scores, cut = self.judge.rate_unit(prompt, response, rules)
        self.calls.append((response, [r.id for r in rules], scores.score.clone()))
        return scores, cut

    def __getattr__(self, name):
        return getattr(self.judge, name)


def _adapter_with_bias(folder: Path, bias: list[float], k: int) -> RuleAdapter:
    """An adapter whose logits are `bias` for every pair (the head's weight is zero)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    return RuleAdapter(model, AutoTokenizer.from_pretrained(folder), rule_ids=[r.id for r in RULES],
                       k=k, max_length=48)


# ---- training and prediction -------------------------------------------------------------------

def test_train_saves_and_reloads(trained, backbone):
    from transformers import AutoTokenizer

    out, summary = trained
    assert summary["steps"] == 3 and len(summary["loss_history"]) == 3  # 10 pairs, batches of 4
    assert all(math.isfinite(e["loss"]) for e in summary["loss_history"])
    meta = json.loads((out / ADAPTER_FILE).read_text())
    assert meta["k"] == 2 and meta["max_length"] == 48
    assert summary["truncation"] == meta["training"]["truncation"] == {
        "max_length": 48, "pairs": 10, "truncated": count_cut(
            AutoTokenizer.from_pretrained(backbone), PAIRS, 48)}
    assert meta["rule_ids"] == [r.id for r in RULES]
    assert meta["loss_history"] == summary["loss_history"]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    adapter = RuleAdapter.from_pretrained(out)
    logits = adapter.logits(PAIRS, batch_size=3)
    # The same as one pair at a time through the saved model, padding and sorting aside.
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        one_by_one = torch.cat([model(**encode_pairs(adapter.tokenizer, [p], 48,
                                                    return_tensors="pt")).logits for p in PAIRS])
        untrained = AutoModelForSequenceClassification.from_pretrained(backbone).eval()(
            **encode_pairs(adapter.tokenizer, PAIRS[:1], 48, return_tensors="pt")).logits
    torch.testing.assert_close(logits, one_by_one, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits[:1], untrained)  # training moved the weights
    assert torch.equal(adapter.predict(PAIRS, batch_size=3), adapter.predict(PAIRS))
    assert adapter.predict(PAIRS).shape == (len(PAIRS), 2)
    assert adapter.predict(PAIRS, k=4).shape == (len(PAIRS), 4)


def test_predict_is_top_k_with_the_lower_rule_first_on_ties(backbone):
    adapter = _adapter_with_bias(backbone, [0.5, 1.0, 1.0, 0.2, 1.0, 0.5], k=3)
    assert adapter.predict(PAIRS[:2]).tolist() == [[1, 2, 4]] * 2
    assert adapter.predict(PAIRS[:1], k=5).tolist() == [[1, 2, 4, 0, 5]]
    assert adapter.predict([]).shape == (0, 3)  # not the tokenizer's IndexError

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(backbone)
    random_adapter = RuleAdapter(model, AutoTokenizer.from_pretrained(backbone),
                                 rule_ids=[r.id for r in RULES], k=3, max_length=48)
    logits = random_adapter.logits(PAIRS)
    hand = [sorted(range(R), key=lambda j: (-row[j], j))[:3] for row in logits.tolist()]
    assert random_adapter.predict(PAIRS).tolist() == hand


def test_pair_texts_keep_the_prompt_end_and_both_response_starts(backbone):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(backbone)
    long = Pair("long", "how " * 60 + "bomb", "sorry " + "no " * 80, "here " + "yes " * 80)
    short = Pair("short", "how do i", "sorry", "here")
    firsts, seconds = pair_texts(tok, [long, short], 32)
    assert firsts[0].endswith("bomb") and len(firsts[0]) < len(long.prompt)
    assert seconds[0].startswith("Response A: sorry no") and "\nResponse B: here yes" in seconds[0]
    assert (firsts[1], seconds[1]) == ("how do i", "Response A: sorry\nResponse B: here")
    ids = encode_pairs(tok, [long, short], 32)["input_ids"]
    assert len(ids[0]) <= 32
    assert count_cut(tok, [long, short], 32) == 1 and count_cut(tok, [long, short], 512) == 0
    with pytest.raises(ValueError, match="max_length = 8 leaves no room"):
        pair_texts(tok, [long], 8)


# ---- apply ------------------------------------------------------------------------------------

def test_apply_rates_k_rules_per_side_and_sums_them(trained, judge):
    adapter = RuleAdapter.from_pretrained(trained[0])
    spy = SpyJudge(judge)
    rows = apply_adapter(adapter, spy, PAIRS, RULES, k=3, progress=False)
    predicted = adapter.predict(PAIRS, k=3).tolist()
    assert len(spy.calls) == 2 * len(PAIRS)
    assert all(len(rule_ids) == 3 for _, rule_ids, _ in spy.calls)
    assert (rows.judge_calls, rows.reused, rows.full_calls) == (60, 0, 2 * len(PAIRS) * R)
    for i, row in enumerate(rows):
        ids = [RULES[j].id for j in predicted[i]]
        (resp_a, ids_a, score_a), (resp_b, ids_b, score_b) = spy.calls[2 * i:2 * i + 2]
        assert (resp_a, resp_b) == (PAIRS[i].response_a, PAIRS[i].response_b)
        assert row.rule_ids == ids == ids_a == ids_b and row.id == PAIRS[i].id
        assert "criterion" not in row.to_row()
        assert row.reward_a == pytest.approx(float(score_a.sum()), rel=1e-6, abs=1e-7)
        assert row.reward_b == pytest.approx(float(score_b.sum()), rel=1e-6, abs=1e-7)
        margin = float(score_a.sum() - score_b.sum())
        assert row.preference == (margin > 0) - (margin < 0)


def test_apply_reuses_the_store(tmp_path, trained, judge):
    adapter = RuleAdapter.from_pretrained(trained[0])
    plain = apply_adapter(adapter, judge, PAIRS, RULES, progress=False)
    path = tmp_path / "ratings.sqlite"
    open_store = lambda: RatingStore(path, judge_fingerprint=judge.fingerprint(),  # noqa: E731
                                     template_fingerprint=judge.template_fingerprint())
    spy = SpyJudge(judge)
    with open_store() as store:
        first = apply_adapter(adapter, spy, PAIRS, RULES, store=store, progress=False)
        assert store.count() == 2 * len(PAIRS) * 2
    assert len(spy.calls) == 2 * len(PAIRS) and first == plain
    spy.calls.clear()
    with open_store() as store:
        again = apply_adapter(adapter, spy, PAIRS, RULES, store=store, progress=False)
        # k = 3 needs one more rule per response: only that one is rated.
        wider = apply_adapter(adapter, spy, PAIRS, RULES, k=3, store=store, progress=False)
    assert again == first and (again.judge_calls, again.reused) == (0, 40)
    assert all(len(ids) == 1 for _, ids, _ in spy.calls) and wider.judge_calls == 20

    # A store of full ratings (what `ramo rate` writes) answers everything.
    full = judge.rate(PAIRS, RULES)
    with RatingStore(tmp_path / "full.sqlite", judge_fingerprint=judge.fingerprint(),
                     template_fingerprint=judge.template_fingerprint()) as store:
        bind(store, PAIRS, range(len(PAIRS)))
        store.add([(p.id, side, rule.id, *(float(getattr(full, f)[i, side, j])
                                             for f in ("p_yes", "p_no", "p_other", "score",
                                                       "relevance")))
                   for i, p in enumerate(PAIRS) for side in (0, 1) for j, rule in enumerate(RULES)])
        spy.calls.clear()
        reused = apply_adapter(adapter, spy, PAIRS, RULES, store=store, progress=False)
    assert spy.calls == [] and reused.judge_calls == 0
    assert [r.rule_ids for r in reused] == [r.rule_ids for r in plain]


# ---- metrics ----------------------------------------------------------------------------------

def test_metrics_on_hand_made_tensors():
    #            rules 0     1     2     3
    a = torch.tensor([[1.0, 0.0, 0.0, 0.0],
                      [0.0, 0.5, 0.0, 0.0],
                      [0.0, 0.0, 0.3, 0.3],
                      [0.2, 0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.9, 0.0],
                      [0.3, 0.3, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[0, 1], [1, 2], [2, -1], [0, 3]])
    predicted = torch.tensor([[1, 0], [1, 3], [0, 1], [0, 3]])
    # overlaps 2, 1, 0, 2 -> precision (1 + .5 + 0 + 1) / 4; recall (1 + .5 + 0 + 1) / 4
    # reference preferences: +1, -1 (0.5 - 0.9), +1 (0.3), +1; predicted: +1, +1, -1 (-0.6), +1
    # labels 0, 0, 1, None -> expected +1, +1, -1: the adapter matches all 3, the full
    # selection only the first
    m = adapter_metrics(predicted, target, a, b, k=2, random_trials=5, labels=[0, 0, 1, None])
    adapter, random_row, full = m["rows"]
    assert (m["pairs"], m["rules"], m["k"], m["labeled_pairs"], m["reference_ties"]) == (4, 4, 2, 3, 0)
    assert adapter["precision_at_k"] == pytest.approx(0.625)
    assert adapter["recall_at_k"] == pytest.approx(0.625)
    assert adapter["exact_set"] == pytest.approx(0.5)
    assert adapter["preference_agreement"] == pytest.approx(0.5)
    assert adapter["human_agreement"] == 1.0
    assert full["preference_agreement"] == 1.0 and full["precision_at_k"] is None
    assert full["human_agreement"] == pytest.approx(1 / 3)
    assert random_row["name"] == "random"
    table = metrics_markdown(m)
    assert "| adapter | 0.625 | 0.625 | 0.500 | 0.500 | 0.000 | 1.000 |" in table

    # A tie is its own outcome: it agrees only with a tie.
    zero = torch.zeros(1, 4)
    tie = adapter_metrics(torch.tensor([[2, 3]]), torch.tensor([[0, 1]]), zero, zero, k=2,
                          random_trials=1, labels=[0])
    assert tie["rows"][0]["preference_agreement"] == 1.0 and tie["rows"][0]["tie_rate"] == 1.0
    assert tie["rows"][0]["human_agreement"] == 0.0 and tie["reference_ties"] == 1


def test_random_baseline_is_near_k_over_r():
    gen = torch.Generator().manual_seed(1)
    n, r, k = 60, 8, 2
    a, b = torch.randn(n, r, generator=gen), torch.randn(n, r, generator=gen)
    target = select_rules(a, b, k=k).indices
    m = adapter_metrics(target.clone(), target, a, b, k=k, random_trials=50, seed=3)
    perfect, random_row, _ = m["rows"]
    assert perfect["precision_at_k"] == perfect["exact_set"] == perfect["preference_agreement"] == 1.0
    assert random_row["precision_at_k"] == pytest.approx(k / r, abs=0.03)
    assert random_row["exact_set"] == pytest.approx(1 / 28, abs=0.02)  # 1 / C(8, 2)
    assert all(0.0 <= v <= 1.0 for row in m["rows"] for v in row.values()
               if isinstance(v, float))
    assert adapter_metrics(target, target, a, b, k=k, random_trials=50, seed=3) == m


# ---- the commands -----------------------------------------------------------------------------

def _write_rules(path: Path, rules=RULES) -> Path:
    write_jsonl(path, [{"id": r.id, "text": r.text} for r in rules])
    return path


def _write_pairs(path: Path) -> Path:
    write_jsonl(path, [{"id": p.id, "prompt": p.prompt, "response_a": p.response_a,
                        "response_b": p.response_b, "label": p.label} for p in PAIRS])
    return path


def test_commands_end_to_end(tmp_path, backbone, judge_parts, judge, capsys):
    model, tok = judge_parts
    judge_dir = tmp_path / "judge"
    model.save_pretrained(judge_dir)
    tok.save_pretrained(judge_dir)
    rules, pairs = _write_rules(tmp_path / "rules.jsonl"), _write_pairs(tmp_path / "pairs.jsonl")
    ratings = judge.rate(PAIRS, RULES)
    store_path = tmp_path / "ratings.sqlite"
    with RatingStore(store_path, judge_fingerprint="judge", template_fingerprint="tpl") as store:
        bind(store, PAIRS, range(len(PAIRS)))
        store.add([(p.id, side, rule.id, 0.0, 0.0, 0.0, float(ratings.score[i, side, j]),
                    float(ratings.relevance[i, side, j]))
                   for i, p in enumerate(PAIRS) for side in (0, 1) for j, rule in enumerate(RULES)])
    full = select_rules(ratings.score[:, 0], ratings.score[:, 1],
                        relevance=ratings.pair_relevance(), k=3)
    selections = tmp_path / "selections.jsonl"
    write_selections(selections, selections_from([p.id for p in PAIRS], [r.id for r in RULES], full))

    out = tmp_path / "adapter"
    assert main(["adapter", "train", "--pairs", str(pairs), "--rules", str(rules),
                 "--selections", str(selections), "--out", str(out), "--ratings", str(store_path),
                 "--holdout", "0.3", "--backbone", str(backbone), "--epochs", "1",
                 "--batch-size", "4", "--max-length", "48", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "on 7 pairs" in printed and "| adapter |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == 3 and metrics["k"] == 3 and len(metrics["holdout_ids"]) == 3
    assert (out / "metrics.md").read_text().count("|") > 10
    assert RuleAdapter.from_pretrained(out).k == 3  # k came from the selections

    chosen = tmp_path / "chosen.jsonl"
    assert main(["adapter", "apply", "--adapter", str(out), "--pairs", str(pairs), "--rules",
                 str(rules), "--out", str(chosen), "--judge", str(judge_dir), "--k", "2",
                 "--ratings", str(tmp_path / "new.sqlite"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "the judge rated 40 (response, rule) pairs" in printed and "instead of the 120" in printed
    rows = load_selections(chosen)
    assert [r.id for r in rows] == [p.id for p in PAIRS] and all(len(r.rule_ids) == 2
                                                                 for r in rows)


# ---- errors -----------------------------------------------------------------------------------

def test_k_beyond_the_pool(tmp_path, trained, backbone):
    adapter = RuleAdapter.from_pretrained(trained[0])
    with pytest.raises(ValueError, match="k = 7 is more than the adapter's R = 6 rules"):
        adapter.predict(PAIRS, k=7)
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="k = 7 is more than the pool's R = 6"):
        train_adapter(PAIRS, [["r1"]] * len(PAIRS), RULES, out, backbone=str(backbone), k=7)
    assert not out.exists()


def test_unknown_rule_ids_and_late_errors_write_nothing(tmp_path, backbone):
    out = tmp_path / "adapter"
    targets = [["r1", "r2"]] * len(PAIRS)
    targets[3] = ["r1", "r99"]
    with pytest.raises(ValueError, match=r"pair 'p3': unknown rule id\(s\) 'r99'"):
        train_adapter(PAIRS, targets, RULES, out, backbone=str(backbone), progress=False)
    targets[3] = ["r1", "r1"]
    with pytest.raises(ValueError, match="pair 'p3': rule id\\(s\\) listed twice: 'r1'"):
        train_adapter(PAIRS, targets, RULES, out, backbone=str(backbone), progress=False)
    targets[3] = ["r1"]
    with pytest.raises(ValueError, match="max_length = 1000 is more than the model's 512"):
        train_adapter(PAIRS, targets, RULES, out, backbone=str(backbone), max_length=1000,
                      progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_decoder_backbone_without_a_pad_token(tmp_path, judge_parts):
    """A causal LM (no pad token, as most) as the adapter's backbone: its EOS token pads, and
    the classifier reads the last real token; trained, saved and reloaded, it predicts."""
    model, tok = judge_parts
    tok = copy.deepcopy(tok)
    tok.pad_token = None
    model.save_pretrained(tmp_path / "decoder")
    tok.save_pretrained(tmp_path / "decoder")
    targets = [[RULES[i % R].id, RULES[(i + 1) % R].id] for i in range(len(PAIRS))]
    out = tmp_path / "adapter"
    train_adapter(PAIRS, targets, RULES, out, backbone=str(tmp_path / "decoder"), k=2,
                  epochs=1, batch_size=4, max_length=48, progress=False)
    adapter = RuleAdapter.from_pretrained(out)
    assert adapter.model.config.pad_token_id == tok.eos_token_id
    assert adapter.predict(PAIRS[:3]).shape == (3, 2)


def test_mismatched_pool(trained, judge):
    adapter = RuleAdapter.from_pretrained(trained[0])
    adapter.check_rules(RULES)
    with pytest.raises(ValueError, match="missing 'r6'"):
        adapter.check_rules(RULES[:5])
    with pytest.raises(ValueError, match="another order"):
        adapter.check_rules(RULES[::-1])
    with pytest.raises(ValueError, match="other texts"):
        adapter.check_rules(RULES[:5] + [Rule("r6", "something else")])
    with pytest.raises(ValueError, match="not in the adapter 'r7'"):
        apply_adapter(adapter, judge, PAIRS, RULES + [Rule("r7", "be kind")], progress=False)


def test_adapter_train_checks_the_store_before_training(tmp_path, monkeypatch, capsys):
    """The held-out pairs' ratings are read before training: a missing store, a missing
    rating or a held-out pair whose text changed since it was rated is refused with nothing
    trained, written or replaced."""
    from dataclasses import replace

    import functools

    from ramo.adapter.train import adapter_step, split_holdout

    @functools.wraps(train_adapter)  # its signature: the command reads its defaults
    def never(*args, **kwargs):
        raise AssertionError("trained before the store was checked")

    monkeypatch.setattr("ramo.adapter.train.train_adapter", never)
    _, held = split_holdout(PAIRS, 0.3, 0)  # what adapter_step holds out with this seed
    lacking, changed_id = held[0].id, held[1].id
    scores = torch.arange(len(PAIRS) * 2 * R, dtype=torch.float32).view(len(PAIRS), 2, R) % 7
    store_path = tmp_path / "ratings.sqlite"
    with RatingStore(store_path, judge_fingerprint="judge", template_fingerprint="tpl") as store:
        bind(store, PAIRS, range(len(PAIRS)))
        store.add([(p.id, side, rule.id, 0.0, 0.0, 0.0, float(scores[i, side, j]), 1.0)
                   for i, p in enumerate(PAIRS) for side in (0, 1) for j, rule in enumerate(RULES)
                   if (p.id, side, rule.id) != (lacking, 1, "r1")])
    selections = selections_from([p.id for p in PAIRS], [r.id for r in RULES],
                                 select_rules(scores[:, 0], scores[:, 1], k=2))
    changed = [replace(p, response_b="CHANGED") if p.id == changed_id else p for p in PAIRS]
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "kept.txt").write_text("an earlier adapter")
    for pairs, store, error, what in (
            (PAIRS, tmp_path / "absent.sqlite", FileNotFoundError, "no ratings store"),
            (PAIRS, store_path, ValueError, rf"ratings are missing .*\('{lacking}', 1, 'r1'\)"),
            (changed, store_path, ValueError, f"pair '{changed_id}' side 1 is bound")):
        with pytest.raises(error, match=what):
            adapter_step(pairs, selections, RULES, out, ratings=store, holdout=0.3, seed=0,
                         progress=False)
        assert [f.name for f in out.iterdir()] == ["kept.txt"]
        assert (out / "kept.txt").read_text() == "an earlier adapter"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["adapter", "ratings.sqlite"]
    # Through the command: refused before training, and nothing written.
    rules, pairs_file = _write_rules(tmp_path / "rules.jsonl"), tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, [{"id": p.id, "prompt": p.prompt, "response_a": p.response_a,
                              "response_b": p.response_b, "label": p.label} for p in changed])
    selections_file = tmp_path / "selections.jsonl"
    write_selections(selections_file, selections)
    fresh = tmp_path / "fresh"
    argv = ["adapter", "train", "--pairs", str(pairs_file), "--rules", str(rules),
            "--selections", str(selections_file), "--out", str(fresh), "--holdout", "0.3",
            "--seed", "0", "--no-progress"]
    assert main(argv + ["--ratings", str(tmp_path / "absent.sqlite")]) == 2
    assert "no ratings store" in capsys.readouterr().err and not fresh.exists()
    assert main(argv + ["--ratings", str(store_path)]) == 2
    assert f"pair '{changed_id}' side 1 is bound" in capsys.readouterr().err
    assert not fresh.exists()


def test_command_errors_write_nothing(tmp_path, trained, capsys):
    rules, pairs = _write_rules(tmp_path / "rules.jsonl"), _write_pairs(tmp_path / "pairs.jsonl")
    selections = tmp_path / "selections.jsonl"
    good = {"id": "p0", "rule_ids": ["r1"], "reward_a": 0.0, "reward_b": 0.0, "margin": 0.0,
            "preference": 0}
    selections.write_text(json.dumps(good) + "\n{not json\n")
    out = tmp_path / "adapter"
    train = ["adapter", "train", "--pairs", str(pairs), "--rules", str(rules), "--out", str(out),
             "--selections", str(selections), "--no-progress"]
    assert main(train) == 2
    assert "line 2: malformed JSON" in capsys.readouterr().err and not out.exists()

    selections.write_text(json.dumps({**good, "id": "p-unknown"}) + "\n")
    assert main(train) == 2
    assert "not in" in capsys.readouterr().err and not out.exists()
    selections.write_text(json.dumps(good) + "\n")
    assert main(train + ["--holdout", "0.5"]) == 2
    assert "--holdout needs --ratings" in capsys.readouterr().err and not out.exists()

    chosen = tmp_path / "chosen.jsonl"
    other = _write_rules(tmp_path / "other.jsonl", RULES[:4])
    assert main(["adapter", "apply", "--adapter", str(trained[0]), "--pairs", str(pairs),
                 "--rules", str(other), "--out", str(chosen), "--judge", "unused"]) == 2
    assert "not the adapter's" in capsys.readouterr().err and not chosen.exists()
    assert main(["adapter", "apply", "--adapter", str(tmp_path / "none"), "--pairs", str(pairs),
                 "--rules", str(rules), "--out", str(chosen)]) == 2
    assert "no Rule Adapter folder" in capsys.readouterr().err
