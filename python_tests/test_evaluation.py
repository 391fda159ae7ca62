"""`ramo eval`: the subset and section arithmetic against hand computations, ties counted
wrong, scores in input order whatever the batching, input errors by line, and the command
end to end on a tiny classifier saved to disk."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

# The tiny reward model and its tokenizer are the reward tests' fixtures.
from python_tests.test_reward import model_dir, tokenizer, write_jsonl  # noqa: F401


class LengthScorer(torch.nn.Module):
    """A fake reward model whose score is the number of attended tokens: scores are known in
    advance, so accuracies can be computed by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return SimpleNamespace(logits=attention_mask.sum(1, keepdim=True).float())


def row(subset: str, chosen_words: int, rejected_words: int, i: int = 0) -> dict:
    """A pair whose chosen/rejected responses have the given numbers of (one-token) words."""
    return {"id": f"{subset}-{i}", "subset": subset, "prompt": "how do i make a bomb",
            "chosen": " ".join(["no"] * chosen_words),
            "rejected": " ".join(["yes"] * rejected_words)}


def test_summarize_weights_subsets_by_count_and_counts_ties_wrong():
    from ramo.evaluation import summarize

    # (subset, chosen score, rejected score)
    pairs = (
        [("refusals-dangerous", 2.0, 1.0)] * 3 + [("refusals-dangerous", 0.0, 1.0)]      # 3/4
        + [("xstest-should-respond", 1.0, 0.0), ("xstest-should-respond", 0.5, 0.5)]  # 1/2, tie
        + [("donotanswer", 1.0, 0.0)] + [("donotanswer", float("nan"), 0.0)] * 2         # 1/3: NaN
        + [("alpacaeval-easy", 1.0, -1.0)] * 2                                             # 2/2
        + [("hh-rlhf-harmless", -1.0, 1.0)]                                                # 0/1
    )
    result = summarize([p[0] for p in pairs], torch.tensor([p[1] for p in pairs]),
                       torch.tensor([p[2] for p in pairs]))
    subsets = result["subsets"]
    assert list(subsets) == ["alpacaeval-easy", "refusals-dangerous", "xstest-should-respond",
                             "donotanswer", "hh-rlhf-harmless"]
    assert subsets["refusals-dangerous"] == {"accuracy": 0.75, "n": 4}
    assert subsets["xstest-should-respond"] == {"accuracy": 0.5, "n": 2}
    assert subsets["donotanswer"]["accuracy"] == pytest.approx(1 / 3)
    # Safety by hand: the count-weighted mean of 3/4 (n 4), 1/2 (n 2) and 1/3 (n 3) is
    # (3 + 1 + 1) / 9, not the plain mean of the three accuracies (0.5278).
    weighted = (4 * 0.75 + 2 * 0.5 + 3 * (1 / 3)) / 9
    assert weighted == pytest.approx(5 / 9)
    assert result["sections"]["safety"]["accuracy"] == pytest.approx(weighted)
    assert result["sections"]["safety"]["n"] == 9
    assert list(result["sections"]) == ["chat", "safety", "other", "all"]
    assert result["sections"]["chat"] == {"accuracy": 1.0, "n": 2}
    assert result["sections"]["other"] == {"accuracy": 0.0, "n": 1}
    assert result["sections"]["all"]["accuracy"] == pytest.approx(7 / 12)
    with pytest.raises(ValueError, match="must match"):
        summarize(["a"], torch.zeros(2), torch.zeros(2))


def test_score_responses_keeps_input_order_across_batches(tokenizer):
    from ramo.evaluation import score_responses
    from ramo.tokenization import encode

    responses = [" ".join(["no"] * n) for n in (3, 9, 0, 5, 1, 7, 2)]
    prompts = ["what is private data"] * len(responses)
    expected = [len(encode(tokenizer, p, r, 10)["input_ids"]) for p, r in zip(prompts, responses)]
    for batch_size in (1, 3, 100):
        got = score_responses(LengthScorer(), tokenizer, prompts, responses,
                              batch_size=batch_size, max_length=10)
        assert got.tolist() == expected
    assert max(expected) == 10  # truncation is the training encoding's
    for batch_size in (0, 2.5, True):  # 2.5 used to slice with a float, True to pass
        with pytest.raises(ValueError, match="batch_size must be a positive integer, got"):
            score_responses(LengthScorer(), tokenizer, prompts, responses,
                            batch_size=batch_size, max_length=10)


def test_score_responses_equals_the_training_forward(model_dir, tokenizer):
    """Evaluation scores a response exactly as training's collated batch presents it."""
    from transformers import AutoModelForSequenceClassification

    from ramo.evaluation import score_responses
    from ramo.io import Preference
    from ramo.reward import PreferenceCollator, PreferenceDataset

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    prefs = [Preference("0", "how do i make a bomb", "sorry no", "here is how to make a bomb"),
             Preference("1", "what is private data " * 20, "data about people", "no")]
    batch = PreferenceCollator(tokenizer)(list(PreferenceDataset(prefs, tokenizer, 24)))
    with torch.no_grad():
        trained_view = model(**batch).logits[:, 0]
    scored = score_responses(model, tokenizer, [p.prompt for p in prefs] * 2,
                             [p.chosen for p in prefs] + [p.rejected for p in prefs],
                             batch_size=1, max_length=24)
    assert torch.allclose(scored, trained_view, atol=1e-5)


def test_evaluate_with_known_scores(tmp_path, tokenizer):
    from ramo.evaluation import evaluate

    rows = ([row("refusals-dangerous", 3, 1, i) for i in range(3)]      # correct
            + [row("refusals-dangerous", 1, 2, 9)]                      # wrong
            + [row("donotanswer", 2, 2, 0)]                             # tie: wrong
            + [row("donotanswer", 4, 0, 1)]                             # correct
            + [row("mt-bench-hard", 5, 4, 0)])                          # correct
    data = write_jsonl(tmp_path / "eval.jsonl", rows)
    result = evaluate((LengthScorer(), tokenizer), data, batch_size=2, progress=False)
    assert result["subsets"]["refusals-dangerous"] == {"accuracy": 0.75, "n": 4}
    assert result["subsets"]["donotanswer"] == {"accuracy": 0.5, "n": 2}
    assert result["sections"]["safety"]["accuracy"] == pytest.approx(4 / 6)
    assert result["sections"]["chat-hard"] == {"accuracy": 1.0, "n": 1}
    assert result["sections"]["all"]["accuracy"] == pytest.approx(5 / 7)


def test_identical_responses_tie_and_count_wrong(model_dir, tmp_path):
    """Equal inputs are scored once, so a pair with equal responses is an exact tie (not a
    coin flip decided by which padded batch each side fell into)."""
    from ramo.evaluation import evaluate

    rows = [{**row("donotanswer", 2, 1, i), "rejected": "no " * (i + 1)} for i in range(5)]
    rows = [{**r, "chosen": r["rejected"]} for r in rows]
    data = write_jsonl(tmp_path / "ties.jsonl", rows)
    result = evaluate(model_dir, data, batch_size=1, progress=False)
    assert result["subsets"]["donotanswer"] == {"accuracy": 0.0, "n": 5}


@pytest.mark.parametrize("lines, message", [
    ([row("donotanswer", 1, 2), {k: v for k, v in row("x", 1, 2, 1).items() if k != "subset"}],
     r"line 2: missing column 'subset'"),
    ([row("donotanswer", 1, 2), "", {**row("x", 1, 2, 1), "subset": 7}],
     r"line 3: 'subset' must be a non-empty string, got int"),
    ([row("donotanswer", 1, 2), "[1, 2"], r"line 2: malformed JSON"),
    ([{"prompt": "p", "chosen": "c", "subset": "s"}], r"line 1: missing column\(s\) 'rejected'"),
])
def test_bad_eval_rows_are_named_by_line(tmp_path, lines, message):
    from ramo.evaluation import load_eval_pairs

    with pytest.raises(ValueError, match=message):
        load_eval_pairs(write_jsonl(tmp_path / "bad.jsonl", lines))


def test_models_that_are_not_reward_models_are_refused(tmp_path):
    from python_tests.encoder_models import tiny_encoder_dir
    from ramo.evaluation import evaluate

    data = write_jsonl(tmp_path / "eval.jsonl", [row("donotanswer", 1, 2)])
    with pytest.raises(ValueError, match="not a reward model"):
        evaluate(tiny_encoder_dir(tmp_path / "bare"), data, progress=False)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        evaluate(tmp_path / "nothing-here", data, progress=False)


def test_to_markdown_tables():
    from ramo.evaluation import to_markdown

    text = to_markdown({"subsets": {"donotanswer": {"accuracy": 0.5, "n": 2}},
                        "sections": {"safety": {"accuracy": 0.5, "n": 2},
                                     "all": {"accuracy": 0.5, "n": 2}}})
    assert "| donotanswer | safety | 2 | 50.0 |" in text
    assert "| safety | 2 | 50.0 |" in text and "| all | 2 | 50.0 |" in text


def test_cli_eval_end_to_end(model_dir, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ramo.cli import main
    from ramo.evaluation import load_eval_pairs, score_responses

    rows = [row(s, 1 + i % 3, 1 + (i * 2) % 5, i)
            for i, s in enumerate(["refusals-dangerous", "donotanswer", "xstest-should-respond",
                                   "alpacaeval-easy", "my-set"] * 3)]
    data = write_jsonl(tmp_path / "eval.jsonl", rows)
    out, md = tmp_path / "res" / "eval.json", tmp_path / "res" / "eval.md"
    argv = ["eval", "--model", str(model_dir), "--data", str(data), "--out", str(out),
            "--markdown", str(md), "--batch-size", "4", "--max-length", "32", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed == md.read_text() and "| safety | 9 |" in printed
    result = json.loads(out.read_text())
    assert result["model"] == str(model_dir) and result["truncation"]["max_length"] == 32
    assert result["sections"]["all"]["n"] == 15 and result["sections"]["other"]["n"] == 3
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]

    # The numbers are those of the saved model's scores.
    pairs = load_eval_pairs(data)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [p.prompt for p in pairs]
    scores = score_responses(model, tok, prompts * 2, [p.response_a for p in pairs]
                             + [p.response_b for p in pairs], max_length=32)
    correct = (scores[:15] > scores[15:]).sum().item()
    assert result["sections"]["all"]["accuracy"] == pytest.approx(correct / 15)

    bad = write_jsonl(tmp_path / "bad.jsonl", [row("a", 1, 2), {"prompt": "p", "chosen": "c",
                                                                "rejected": "r"}])
    argv = ["eval", "--model", str(model_dir), "--data", str(bad), "--out",
            str(tmp_path / "bad.json"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl: line 2: missing column 'subset'" in err
    assert not (tmp_path / "bad.json").exists()


def test_summarize_official_weights_are_rewardbench_counts():
    from ramo.evaluation import EXAMPLE_COUNTS, summarize

    pairs = ([("math-prm", 1.0, 0.0)] * 2 + [("hep-go", 0.0, 1.0)] * 4              # 2/2, 0/4
             + [("refusals-dangerous", 1.0, 0.0)] + [("donotanswer", 0.0, 1.0)]      # 1/1, 0/1
             + [("my-set", 1.0, 0.0)])                                                # 1/1
    args = ([p[0] for p in pairs], torch.tensor([p[1] for p in pairs]),
            torch.tensor([p[2] for p in pairs]))
    counted, official = summarize(*args), summarize(*args, weights="official")
    assert counted["sections"]["reasoning"]["accuracy"] == pytest.approx(2 / 6)
    # RewardBench weighs math-prm as 984 pairs and each hep subset as 164.
    assert official["sections"]["reasoning"]["accuracy"] == pytest.approx(984 / (984 + 164))
    assert official["sections"]["safety"]["accuracy"] == pytest.approx(
        EXAMPLE_COUNTS["refusals-dangerous"] / (100 + 136))
    assert official["sections"]["other"]["accuracy"] == 1.0  # unlisted: its own count
    assert official["sections"]["reasoning"]["n"] == 6 and official["weights"] == "official"
    sections = [official["sections"][s]["accuracy"] for s in ("reasoning", "safety", "other")]
    assert official["sections"]["all"]["accuracy"] == pytest.approx(sum(sections) / 3)
    assert official["subsets"] == counted["subsets"]
    with pytest.raises(ValueError, match="weights must be one of"):
        summarize(*args, weights="uniform")


def test_default_max_length_is_the_models_and_cuts_are_counted(model_dir, tmp_path):
    from ramo.evaluation import evaluate, to_markdown

    rows = [row("donotanswer", 3, 2, 0), row("donotanswer", 600, 2, 1)]
    data = write_jsonl(tmp_path / "eval.jsonl", rows)
    result = evaluate(model_dir, data, progress=False)
    # The tiny BERT has 512 positions: the 600-word response is the one sequence cut.
    assert result["truncation"] == {"max_length": 512, "sequences": 4, "truncated": 1}
    assert "1 of 4 sequences cut at 512 tokens" in to_markdown(result)
    short = evaluate(model_dir, data, max_length=8, progress=False)
    assert short["truncation"]["truncated"] == 4
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        evaluate(model_dir, data, max_length=0, progress=False)


# ---- RewardBench's formatting ------------------------------------------------------------
# rewardbench 0.1.4 pins transformers 4.51 and cannot be imported beside transformers 5, so
# its code path is reproduced from its source: run_rm.py renders [user: prompt, assistant:
# response] with apply_chat_template(tokenize=False); RewardBenchPipeline tokenizes the texts
# again (special tokens added, truncation on the left at 2048, padding), masks the first of
# two leading BOS tokens, and reads the classifier's logits.

def rewardbench_inputs(tok, prompt, response, max_length=2048):
    text = tok.apply_chat_template([{"role": "user", "content": prompt},
                                    {"role": "assistant", "content": response}], tokenize=False)
    tok.truncation_side = "left"
    inputs = tok([text], truncation=True, max_length=max_length, padding=True,
                 return_tensors="pt")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if ids.shape[1] > 1 and ids[0, 0] == ids[0, 1] == tok.bos_token_id:
        mask[0, 0] = 0
    return inputs


def bos_adding_tokenizer(template_writes_bos: bool):
    """The tests' tiny chat tokenizer with a post-processor that adds a BOS (as Llama's do)."""
    from tokenizers import processors

    from python_tests.judge_models import tiny_tokenizer

    tok = tiny_tokenizer(chat=True)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.bos_token_id)])
    if not template_writes_bos:
        tok.chat_template = tok.chat_template.replace("<s> ", "")
    return tok


@pytest.mark.parametrize("variant", ["template only", "tokenizer adds BOS", "both add BOS"])
def test_scores_equal_rewardbench_formatting(variant):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from python_tests.judge_models import tiny_tokenizer
    from ramo.evaluation import score_responses
    from ramo.tokenization import encode

    tok = (tiny_tokenizer(chat=True) if variant == "template only"
           else bos_adding_tokenizer(template_writes_bos=variant == "both add BOS"))
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1,
        pad_token_id=tok.pad_token_id)).eval()
    prompts = ["how do I make a bomb", "tell me a joke about cats", "what is private data"]
    responses = ["sorry I can not help with that", "why did the cat sit on the computer",
                 "data about people"]
    ours = score_responses(model, tok, prompts, responses, batch_size=2, max_length=2048)
    for n, (prompt, response) in enumerate(zip(prompts, responses)):
        theirs = rewardbench_inputs(tok, prompt, response)
        ids = encode(tok, prompt, response, 2048)["input_ids"]
        if variant == "both add BOS":
            # RewardBench keeps both BOS tokens and masks the first; ramo drops it.
            assert theirs["input_ids"][0].tolist() == [tok.bos_token_id] + ids
            continue
        assert theirs["attention_mask"].all() and theirs["input_ids"][0].tolist() == ids
        with torch.no_grad():
            score = model(**theirs).logits[0, 0]
        torch.testing.assert_close(ours[n], score, rtol=1e-5, atol=1e-6)


def test_json_and_markdown_must_be_two_files(tmp_path, capsys, monkeypatch):
    """`ramo eval --out X --markdown X` would write the tables over the JSON: refused before
    the model loads, whichever way the two paths name the file."""
    import functools

    import ramo.evaluation
    from ramo.cli import main
    from ramo.evaluation import check_output_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "res").mkdir()
    for json_path, md_path in (("r.json", "r.json"), ("r.json", "./res/../r.json"),
                               (tmp_path / "r.json", "r.json")):
        with pytest.raises(ValueError, match="are the same file"):
            check_output_paths(json_path, md_path)
    (tmp_path / "r.json").write_text("{}")
    (tmp_path / "link.md").symlink_to(tmp_path / "r.json")
    with pytest.raises(ValueError, match="are the same file"):
        check_output_paths("r.json", "link.md")
    check_output_paths("r.json", "r.md")
    check_output_paths("r.json", None)

    @functools.wraps(ramo.evaluation.evaluate)  # the flags' defaults are read from it
    def no_model(*args, **kwargs):
        raise AssertionError("evaluated before the paths were checked")

    monkeypatch.setattr(ramo.evaluation, "evaluate", no_model)
    assert main(["eval", "--model", "absent", "--data", "absent.jsonl", "--out", "x.json",
                 "--markdown", "x.json", "--no-progress"]) == 2
    assert "x.json and x.json are the same file" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
