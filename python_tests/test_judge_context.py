"""The judge's context window: a conversation longer than max_length is cut in its middle,
never the instructions or the rule, so that every sequence the judge reads fits; the cut is
the same whatever rules are rated with it; ratings of a cut response are the plain forward
pass of what `render` returns; the store records the cuts, and on_overflow="error" refuses
naming the pairs before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from python_tests.baselines import naive_judge_scores
from python_tests.judge_models import tiny_llama, tiny_tokenizer
from ramo.cli import main
from ramo.judge import RULE_FIRST, RuleJudge
from ramo.judge.context import MARKER, ContextOverflowError, context_limit

RULES = ["never give weapon instructions", "do not insult people", "be honest",
         "protect private data and answer safe questions"]
PROMPT = "how do I make a bomb"
# About 300 tokens of the tiny tokenizer: past a max_length of 120.
LONG = "here are the steps mix these chemicals " + "tell me a joke about cats " * 45 + \
    "why did the cat sit on the computer"
MAX = 120


@pytest.fixture(scope="module")
def parts():
    tok = tiny_tokenizer(chat=True)
    boost = [tok.convert_tokens_to_ids(w) for w in ("Yes", "No", "Irrelevant")]
    return tiny_llama(len(tok), boost_ids=boost), tok


def _judge(parts, **options) -> RuleJudge:
    return RuleJudge(*parts, progress=False, **options)


def test_context_limit_comes_from_the_config_and_the_tokenizer(parts):
    model, tok = parts
    assert context_limit(model.config, tok) == 4096  # the tokenizer states none
    tok_limited = tiny_tokenizer(chat=True)
    tok_limited.model_max_length = 1000
    assert context_limit(model.config, tok_limited) == 1000
    assert context_limit(None, tok) is None
    assert _judge(parts).max_length == 4096


@pytest.mark.parametrize("template", ["rule-last", RULE_FIRST], ids=["rule-last", "rule-first"])
def test_a_long_conversation_is_cut_in_the_middle(parts, template):
    model, tok = parts
    judge = _judge(parts, max_length=MAX, template=template)
    uncut = _judge(parts, template=template)
    instructions = tok.decode(uncut.render("p", "r", "x")[:12])
    for rule in RULES:
        ids = judge.render(PROMPT, LONG, rule)
        assert len(ids) <= MAX < len(uncut.render(PROMPT, LONG, rule))
        text = tok.decode(ids)
        assert text.startswith(instructions)  # the instructions are whole
        assert tok.decode(tok(rule, add_special_tokens=False)["input_ids"]) in text  # the rule
        # the response keeps its start and its end around the marker; the prompt is whole
        assert "here are the steps" in text and "sit on the computer" in text
        assert PROMPT in text and "[UNK]" in text  # the marker is unknown to this tokenizer
    # A short conversation is not touched.
    assert judge.render(PROMPT, "sorry I can not help with that", RULES[0]) == \
        uncut.render(PROMPT, "sorry I can not help with that", RULES[0])


def test_the_cut_does_not_depend_on_the_rules_rated(parts):
    judge = _judge(parts, max_length=MAX)
    both = judge._ids(PROMPT, LONG, RULES)
    one = judge._ids(PROMPT, LONG, RULES[2:3])
    assert both[0] == one[0] and both[1][2] == one[1][0] and both[2] == one[2]
    assert both[2].tokens > MAX and both[2].kept <= MAX - 30  # room for a rule: MAX // 4


def test_cut_ratings_equal_the_plain_forward_pass_of_render(parts):
    model, _ = parts
    judge = _judge(parts, max_length=MAX, batch_size=3)
    scores, cut = judge.rate_unit(PROMPT, LONG, RULES)
    assert cut is not None
    ids = {a: judge.answer_token_ids(a) for a in ("yes", "no", "irrelevant")}
    for r, rule in enumerate(RULES):
        naive = naive_judge_scores(model, judge.render(PROMPT, LONG, rule), ids)
        assert scores.score[r].item() == pytest.approx(naive["score"], abs=1e-6)
    assert judge.rate_unit(PROMPT, "no", RULES)[1] is None


def test_both_parts_share_the_room(parts):
    """A long prompt and a long response are both cut; a short one keeps all of it."""
    judge = _judge(parts, max_length=MAX)
    text = judge._renderer.tokenizer.decode(judge.render(LONG, LONG, RULES[0]))
    assert text.count("[UNK]") == 2
    short_prompt = judge._renderer.tokenizer.decode(judge.render(PROMPT, LONG, RULES[0]))
    assert PROMPT in short_prompt and short_prompt.count("[UNK]") == 1


def test_overflow_settings_are_checked(parts):
    with pytest.raises(ValueError, match="more than the judge's context limit of 4096"):
        _judge(parts, max_length=5000)
    with pytest.raises(ValueError, match="on_overflow must be 'truncate' or 'error'"):
        _judge(parts, on_overflow="drop")
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        _judge(parts, max_length=0)
    with pytest.raises(ValueError, match="tokens for the conversation after the judge's"):
        _judge(parts, max_length=60).rate_response(PROMPT, LONG, RULES)
    with pytest.raises(ContextOverflowError, match="leaves no room for the rule"):
        _judge(parts, max_length=MAX, on_overflow="error").rate_response(PROMPT, LONG, RULES)


def test_fingerprint_tells_a_shorter_max_length_apart(parts):
    default = _judge(parts).template_fingerprint()
    assert _judge(parts, max_length=4096).template_fingerprint() == default
    assert _judge(parts, max_length=MAX).template_fingerprint() != default
    assert _judge(parts, max_length=MAX, on_overflow="error").template_fingerprint() == \
        _judge(parts, max_length=MAX).template_fingerprint()
    assert MARKER.strip() == "[...]"


# ---- through `ramo rate` --------------------------------------------------------------------

@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory, parts) -> Path:
    path = tmp_path_factory.mktemp("judge")
    model, tok = parts
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _files(tmp_path: Path) -> tuple[Path, Path]:
    pairs = [{"id": "short", "prompt": PROMPT, "response_a": "sorry I can not help with that",
              "response_b": "no"},
             {"id": "long", "prompt": PROMPT, "response_a": "no", "response_b": LONG}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (tmp_path / "rules.jsonl").write_text("".join(
        json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(RULES)))
    return tmp_path / "pairs.jsonl", tmp_path / "rules.jsonl"


def _rate(tmp_path, judge_dir, out, *flags) -> int:
    pairs, rules = _files(tmp_path)
    return main(["rate", "--pairs", str(pairs), "--rules", str(rules), "--judge", str(judge_dir),
                 "--out", str(out), "--no-progress", *flags])


def test_rate_records_the_cuts_and_refuses_another_max_length(tmp_path, judge_dir, capsys):
    from ramo.ratings import RatingStore

    out = tmp_path / "r.sqlite"
    assert _rate(tmp_path, judge_dir, out, "--max-length", str(MAX)) == 0
    printed = capsys.readouterr().out
    assert f"1 responses were longer than the judge's {MAX}-token context" in printed
    with RatingStore.open_existing(out) as store:
        (cut,) = store.cut_units()
        assert cut[:2] == ("long", 1) and cut[2] > MAX and cut[3] <= MAX
        assert store.template_info["max_length"] == MAX
        assert store.count() == 2 * 2 * len(RULES)
    # A rerun with the same limit has nothing to do; another limit is another template.
    assert _rate(tmp_path, judge_dir, out, "--max-length", str(MAX)) == 0
    assert "1 responses were longer" in capsys.readouterr().out
    assert _rate(tmp_path, judge_dir, out, "--max-length", "200") == 2
    assert "holds ratings from another template" in capsys.readouterr().err


def test_rate_on_overflow_error_names_the_pairs_and_writes_nothing(tmp_path, judge_dir, capsys):
    out = tmp_path / "r.sqlite"
    assert _rate(tmp_path, judge_dir, out, "--max-length", str(MAX), "--on-overflow",
                 "error") == 2
    err = capsys.readouterr().err
    assert "1 responses do not fit the judge's max_length of 120 tokens" in err
    assert "pairs long (B: " in err and "short" not in err
    assert not out.exists()


@pytest.mark.parametrize("on_overflow", ["truncate", "error"])
def test_rate_refuses_a_max_length_too_short_before_making_the_store(tmp_path, judge_dir, capsys,
                                                                     on_overflow):
    """Whatever on_overflow, a max_length that leaves no room for the judge's instructions is
    refused before the store is made: a store bound to it would refuse the corrected rerun
    as "another template"."""
    out = tmp_path / "r.sqlite"
    assert _rate(tmp_path, judge_dir, out, "--max-length", "5", "--on-overflow",
                 on_overflow) == 2
    err = capsys.readouterr().err
    assert "max_length 5 leaves 0 tokens for the conversation after the judge's " \
        "instructions" in err and "--max-length" in err, err
    assert not out.exists()
    assert _rate(tmp_path, judge_dir, out) == 0
    assert out.is_file()


def test_check_context_measures_the_room_like_the_cut(parts):
    """The shortest max_length check_context accepts is one under which every conversation
    can be cut (check_room and fit_conversation share the bound)."""
    from ramo.io import as_rules

    rules = as_rules(RULES)
    lengths = range(20, 200)
    accepted = next(n for n in lengths if _accepts(_judge(parts, max_length=n), rules))
    assert all(_accepts(_judge(parts, max_length=n), rules) for n in range(accepted, accepted + 5))
    _, cut = _judge(parts, max_length=accepted).rate_unit(PROMPT, LONG, RULES)
    assert cut is not None and cut.kept < accepted
    with pytest.raises(ValueError, match="tokens for the conversation after the judge's"):
        _judge(parts, max_length=accepted - 1).rate_unit(PROMPT, LONG, RULES)


def _accepts(judge, rules) -> bool:
    try:
        judge.check_context([{"id": "a", "prompt": PROMPT, "response_a": "no",
                              "response_b": "yes"}], rules)
    except ValueError:
        return False
    return True


def test_merge_carries_the_cuts(tmp_path, parts):
    from ramo.io import as_pairs, as_rules
    from ramo.rate import open_store, rate
    from ramo.ratings import RatingStore, merge_stores

    judge = _judge(parts, max_length=MAX)
    pairs = as_pairs([{"id": "a", "prompt": PROMPT, "response_a": "no", "response_b": LONG}])
    with open_store(tmp_path / "shard.sqlite", judge) as store:
        rate(judge, pairs, as_rules(RULES[:2]), store, progress=False)
    merge_stores(tmp_path / "merged.sqlite", [tmp_path / "shard.sqlite"])
    with RatingStore.open_existing(tmp_path / "merged.sqlite") as merged, \
            RatingStore.open_existing(tmp_path / "shard.sqlite") as shard:
        assert merged.cut_units() == shard.cut_units() != []
        assert merged.read() == shard.read()
