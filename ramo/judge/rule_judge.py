"""RuleJudge: scores every rule of a pool on a response with a causal LM judge.

A rule's score for a response is P(yes) - P(no) of the judge's next token after the rendered
(prompt, response, rule) (see templates.py). With the default rule-last template the
conversation is a prefix shared by all R rules: it is prefilled once, and only the suffix
tokens are paid per rule. On the CPU a batch of rule suffixes runs packed into one sequence
and attends to the prefix's keys and values in place (prefix_attention.py); elsewhere the
prefix's key/value cache is broadcast over a right-padded batch of suffixes. The LM head is
never applied to any position but the answer position, and there through
`ramo.ops.judge_scores`, which never holds [B, V] logits.

Right padding (the cached path, and whole prompts without a shared prefix) needs no attention
mask: in a causal model a real token only attends to positions before it, all of them real,
so padding changes no score; each sequence's answer position is its own last real token.

A conversation too long for the judge's context (`max_length`, by default the model's own
limit) is cut in its middle, or refused with on_overflow="error" (context.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ramo.checks import optional_positive_integer, positive_integer
from ramo.io import as_pairs, as_rules
from ramo.judge import answers as _answers
from ramo.judge import prefix_attention
from ramo.judge.context import (MARKER, ContextOverflowError, Truncation, check_room,
                                context_limit, fit_conversation, rule_room)
from ramo.judge.templates import JudgeTemplate, TemplateRenderer, get_template
from ramo.ops import JudgeScores, judge_scores
from ramo.ratings import FIELDS, Ratings


def check_options(*, normalize: str = "vocab", batch_size: int = 16,
                  max_length: int | None = None, on_overflow: str = "truncate",
                  answer_words: dict | None = None, answer_ids: dict | None = None) -> None:
    """RuleJudge's options that need no model, checked (ValueError naming the option): by
    the judge itself, and by the pipeline before its first step writes anything. The answer
    ids' range needs the tokenizer: checked when the judge is built."""
    _answers.check_answers(answer_words, answer_ids)
    if normalize not in ("vocab", "choices"):
        raise ValueError(f"normalize must be 'vocab' or 'choices', not {normalize!r}")
    positive_integer("batch_size", batch_size)
    optional_positive_integer("max_length", max_length)
    if on_overflow not in ("truncate", "error"):
        raise ValueError(f"on_overflow must be 'truncate' or 'error', not {on_overflow!r}")


def _text_of(item, what: str) -> str:
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f"{what} is empty or not a string: {item!r}")
    return item


class RuleJudge:
    """Rates (response, rule) pairs with a Hugging Face causal LM.

    Args:
        model: any causal LM (``AutoModelForCausalLM``), in the dtype and device to run in;
            None when an engine runs the model.
        tokenizer: its tokenizer; its chat template is used when it has one.
        template: "rule-last" (default; the conversation prefix is shared by all rules),
            "rule-first" (the reference pipeline's order; batched, nothing shared), a
            template file (`ramo.judge.templates.load_template`), or a `JudgeTemplate`.
        normalize: "vocab" (softmax over the whole vocabulary, the method's definition) or
            "choices" (softmax over the answer tokens only).
        batch_size: sequences (rule suffixes, or whole prompts when nothing is shared) per
            forward pass; bounds the memory of the broadcast prefix cache.
        answer_words: the words the judge is asked to answer with, e.g. {"irrelevant": "NA"}.
        answer_ids: token ids to sum for an answer, for words that are not one token.
        share_prefix: prefill the conversation once per response; default: on for a template
            whose rule comes last.
        backend: the `judge_scores` backend (None: by device).
        progress: show a progress bar in `rate`.
        engine: instead of `model`, an engine that scores ramo's rendered ids itself
            (`ramo.judge.vllm_engine.VllmEngine`); batch_size, share_prefix and backend are
            then the engine's business.
        max_length: the longest sequence (instructions, conversation and rule) the judge is
            given; default: the model's context limit (`context.context_limit`).
        on_overflow: "truncate" (cut a conversation too long for max_length in its middle,
            never the instructions or the rule; see context.py) or "error" (refuse it with
            ContextOverflowError).
    """

    def __init__(self, model, tokenizer, *, template: str | JudgeTemplate = "rule-last",
                 normalize: str = "vocab", batch_size: int = 16,
                 answer_words: dict[str, str] | None = None,
                 answer_ids: dict[str, list[int]] | None = None,
                 use_chat_template: bool | None = None, share_prefix: bool | None = None,
                 backend: str | None = None, progress: bool = True, engine=None,
                 max_length: int | None = None, on_overflow: str = "truncate"):
        check_options(normalize=normalize, batch_size=batch_size, max_length=max_length,
                      on_overflow=on_overflow, answer_words=answer_words, answer_ids=answer_ids)
        if (model is None) == (engine is None):
            raise ValueError("give a causal LM (model) or an engine that runs one, not both")
        self.engine = engine
        self.model = None
        if model is not None:
            _check_lm_head(model)
            self.model = model.eval()
            head = model.get_output_embeddings()
            self._head_weight = head.weight
            self._head_bias = getattr(head, "bias", None)
        self.tokenizer = tokenizer
        self.template = get_template(template)
        self.normalize = normalize
        self.batch_size = batch_size
        self.backend = backend
        self.progress = progress
        words = _answers.answer_words(answer_words)
        self._answer_ids = _answers.resolve_answer_ids(tokenizer, words, answer_ids)
        self._renderer = TemplateRenderer(self.template, tokenizer, words, use_chat_template)
        rule_last = self.template.body.rstrip().endswith("{rule}")
        self.share_prefix = rule_last if share_prefix is None else bool(share_prefix)
        self._set_context(max_length, on_overflow)

    def _set_context(self, max_length: int | None, on_overflow: str) -> None:
        if self.engine is not None:
            own = self.engine.context_limit()
        else:
            own = context_limit(self.model.config, self.tokenizer)
        if max_length is not None and own is not None and max_length > own:
            raise ValueError(f"max_length {max_length} is more than the judge's context "
                             f"limit of {own} tokens")
        self._own_limit = own
        self.max_length = own if max_length is None else max_length
        self.on_overflow = on_overflow

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu", engine: str = "transformers",
                        engine_options: dict | None = None, **kwargs) -> "RuleJudge":
        """A judge from a local folder or a hub id, or "default" for the embedded judge.

        engine: "transformers" (the model runs here, on `device`) or "vllm" (a `VllmEngine`
        over a local folder, with `engine_options` for `vllm.LLM`; it places the model
        itself)."""
        from ramo.judge.models import ENGINES, load_judge_model

        if engine not in ENGINES:
            raise ValueError(f"unknown judge engine {engine!r}; the engines are {ENGINES}")
        model, tokenizer, defaults = load_judge_model(name_or_path, dtype=dtype, device=device,
                                                      engine=engine, engine_options=engine_options)
        if "answer_ids" in defaults:
            kwargs["answer_ids"] = _answers.with_judge_ids(
                defaults.pop("answer_ids"), kwargs.get("answer_words"), kwargs.get("answer_ids"))
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        return cls(model, tokenizer, **kwargs)

    # ---- what anyone can check -----------------------------------------------------------

    def render(self, prompt: str, response: str, rule_text: str) -> list[int]:
        """The token ids whose next-token distribution gives (response, rule) its score."""
        _text_of(prompt, "prompt"), _text_of(response, "response"), _text_of(rule_text, "rule")
        prefix, (suffix,), _ = self._ids(prompt, response, [rule_text])
        return prefix + suffix

    def answer_token_ids(self, answer: str) -> list[int]:
        """The token ids whose probabilities are summed for "yes", "no" or "irrelevant"."""
        if answer not in _answers.ANSWERS:
            raise ValueError(f"unknown answer {answer!r}; the answers are {_answers.ANSWERS}")
        return list(self._answer_ids[answer])

    def fingerprint(self) -> str:
        """Identifies the judge model: its class, config and a sample of its weights (the
        same for the same weights and dtype on either engine)."""
        return self.engine.fingerprint() if self.engine else model_fingerprint(self.model)

    def template_fingerprint(self) -> str:
        """Identifies everything that turns (prompt, response, rule) into a score."""
        fingerprint = self._renderer.fingerprint(self._answer_ids, self.normalize)
        if self.max_length == self._own_limit:  # the model's own limit: part of its fingerprint
            return fingerprint
        # A shorter max_length changes the text the judge reads of long conversations.
        cut = json.dumps([fingerprint, self.max_length, MARKER, rule_room(self.max_length)])
        return hashlib.sha256(cut.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        if self.engine is not None:
            model = {"model": self.engine.path, "dtype": str(self.engine.dtype),
                     "engine": type(self.engine).__name__}
        else:
            model = {"model": getattr(self.model.config, "_name_or_path", "")
                     or type(self.model).__name__, "dtype": str(self._head_weight.dtype)}
        return {
            **model, "template": self.template.name,
            "normalize": self.normalize, "answer_ids": self._answer_ids,
            "chat_template": self._renderer.use_chat, "max_length": self.max_length,
            "on_overflow": self.on_overflow,
        }

    # ---- rating --------------------------------------------------------------------------

    def rate_response(self, prompt: str, response: str, rules: Sequence) -> JudgeScores:
        """Scores of every rule on one response; each field [R]. rules: `Rule`s, mappings
        with "id" and "text", or plain texts (`ramo.io.as_rules`)."""
        return self.rate_unit(prompt, response, rules)[0]

    @torch.inference_mode()
    def rate_unit(self, prompt: str, response: str,
                  rules: Sequence) -> tuple[JudgeScores, Truncation | None]:
        """`rate_response`, and how the conversation was cut to fit max_length (None: it
        was not)."""
        texts = [rule.text for rule in as_rules(rules)]
        _text_of(prompt, "prompt"), _text_of(response, "response")
        prefix, suffixes, cut = self._ids(prompt, response, texts)
        if self.engine is not None:
            return self._engine_scores([prefix + s for s in suffixes]), cut
        if self.share_prefix:
            hidden = self._answer_hidden_shared(prefix, suffixes)
        else:
            hidden = self._answer_hidden_unshared([prefix + s for s in suffixes])
        return judge_scores(hidden, self._head_weight, self._answer_ids["yes"],
                            self._answer_ids["no"], self._answer_ids["irrelevant"],
                            bias=self._head_bias, normalize=self.normalize,
                            backend=self.backend), cut

    def overflow(self, prompt: str, response: str, rules: Sequence = ()) -> int | None:
        """The length of the judge's prompt for this conversation (rule words aside) when,
        with room for the longest of `rules` (at least `context.RULE_ROOM` tokens), it is
        more than max_length; None when it fits."""
        texts = [rule.text for rule in as_rules(rules)] if len(rules) else []
        _, _, length, room = self._render(texts, prompt, response)
        return None if self._fits(length, room) else length

    def check_context(self, pairs: Sequence, rules: Sequence) -> None:
        """Before anything is rated or written (a store records its max_length, so a run
        refused later would leave one bound to it): ValueError when max_length leaves no
        room for a conversation after the instructions and the longest of `rules`, whatever
        on_overflow; with on_overflow="error", ContextOverflowError naming the pairs whose
        conversation does not fit max_length with room for that rule."""
        rules = as_rules(rules)
        if self.max_length is None or not rules:
            return
        # The rule that needs the most room after the conversation, found once (each call
        # renders the rules it is given), measured as the judge reads it (its lead-in off).
        longest = [max(rules, key=lambda rule: len(self.tokenizer(
            self._renderer.rule_line(rule.text), add_special_tokens=False)["input_ids"]))]
        room = self._render([longest[0].text], "x", "x")[3]
        check_room(self._renderer, max_length=self.max_length, room=room)
        if self.on_overflow != "error":
            return
        over = [(pair.id, side, length) for pair in as_pairs(pairs)
                for side, text in enumerate((pair.response_a, pair.response_b))
                if (length := self.overflow(pair.prompt, text, longest)) is not None]
        if over:
            shown = ", ".join(f"{pair_id} ({'AB'[side]}: {length} tokens)"
                              for pair_id, side, length in over[:10])
            more = f" and {len(over) - 10} more" if len(over) > 10 else ""
            raise ContextOverflowError(
                f"{len(over)} responses do not fit the judge's max_length of {self.max_length} "
                f"tokens with room for the rule: pairs {shown}{more}; nothing was rated. "
                "--on-overflow truncate cuts them in the middle (--max-length sets the limit)")

    def _render(self, texts: list[str], prompt: str, response: str):
        """(prefix, suffixes, the length without a rule's words, the room that the longest
        of `texts` needs after it)."""
        prefix, suffixes = self._renderer.ids(prompt, response, texts + [""])
        bare = suffixes.pop()
        words = max((len(s) for s in suffixes), default=len(bare)) - len(bare)
        room = max(words, rule_room(self.max_length)) if self.max_length is not None else 0
        return prefix, suffixes, len(prefix) + len(bare), room

    def _fits(self, length: int, room: int) -> bool:
        return self.max_length is None or length + room <= self.max_length

    def _ids(self, prompt: str, response: str,
             texts: list[str]) -> tuple[list[int], list[list[int]], Truncation | None]:
        """The renderer's (prefix, suffixes) for a conversation that fits max_length, cut
        first when it does not (or ContextOverflowError with on_overflow="error")."""
        prefix, suffixes, length, room = self._render(texts, prompt, response)
        if self._fits(length, room):
            return prefix, suffixes, None
        if self.on_overflow == "error":
            raise ContextOverflowError(
                f"the conversation takes {length} of the judge's {self.max_length} tokens "
                f"(max_length) and leaves no room for the rule ({room} tokens); "
                "on_overflow='truncate' would cut it in the middle")
        prompt, response, cut = fit_conversation(self._renderer, prompt, response,
                                                 length=length, max_length=self.max_length,
                                                 room=room)
        return *self._renderer.ids(prompt, response, texts), cut

    def rate(self, pairs: Sequence, rules: Sequence) -> Ratings:
        """Ratings of every pair on every rule, in memory (`ramo.rate.rate` rates into a
        store, resumably)."""
        from ramo.judge.rating_loop import rate_units

        pairs, rules = as_pairs(pairs), as_rules(rules)
        n, r = len(pairs), len(rules)
        fields = {f: torch.zeros(n, 2, r) for f in FIELDS}
        units = [(i, side, rules) for i in range(n) for side in (0, 1)]
        for i, side, scores in rate_units(self, pairs, units, progress=self.progress):
            for f in FIELDS:
                fields[f][i, side] = getattr(scores, f).float().cpu()
        return Ratings(pair_ids=tuple(p.id for p in pairs), rule_ids=tuple(x.id for x in rules),
                       **fields)

    # ---- forward passes ------------------------------------------------------------------

    def _engine_scores(self, sequences: list[list[int]]) -> JudgeScores:
        from ramo.reference.judge_scores import from_listed_logprobs

        ids = self._answer_ids
        listed = self.engine.listed_logprobs(sequences,
                                             ids["yes"] + ids["no"] + ids["irrelevant"])
        scores = from_listed_logprobs(listed, len(ids["yes"]), len(ids["no"]), self.normalize)
        # The transformers engine's outputs are in the judge's accumulation dtype: fp32
        # below fp64 (vLLM returns fp32 log-probabilities).
        return JudgeScores(*(x.to(torch.float32) for x in scores))

    def _decoder(self):
        return self.model.base_model

    def _device(self) -> torch.device:
        return self._head_weight.device

    def _answer_hidden_shared(self, prefix: list[int], suffixes: list[list[int]]) -> torch.Tensor:
        from transformers import DynamicCache

        device = self._device()
        decoder = self._decoder()
        out = decoder(input_ids=torch.tensor([prefix], device=device), use_cache=True)
        prefix_kv = [(layer[0], layer[1]) for layer in _output_cache(out)]
        longest = len(prefix) + max(len(s) for s in suffixes)
        if device.type == "cpu" and prefix_attention.supports(self.model, longest):
            return self._last_hidden_packed(len(prefix), prefix_kv, suffixes)

        def run(ids: torch.Tensor) -> torch.Tensor:
            b, length = ids.shape
            # expand() is a view; the cache's first update copies it once into [b, ...].
            cache = DynamicCache(
                ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1))
                                for k, v in prefix_kv],
                config=self.model.config)
            positions = torch.arange(len(prefix), len(prefix) + length, device=device)
            with _suffix_attention(self.model, device):
                return decoder(input_ids=ids, use_cache=True, position_ids=positions.expand(b, -1),
                               **_cache_argument(decoder, cache)).last_hidden_state

        return self._last_hidden(suffixes, run)

    def _answer_hidden_unshared(self, sequences: list[list[int]]) -> torch.Tensor:
        decoder = self._decoder()
        return self._last_hidden(
            sequences, lambda ids: decoder(input_ids=ids, use_cache=False).last_hidden_state)

    def _batches(self, sequences: list[list[int]]):
        """Indices of the sequences, batch_size at a time; similar lengths in one batch: less
        padding, which is paid like real tokens."""
        order = sorted(range(len(sequences)), key=lambda j: len(sequences[j]))
        return [order[start:start + self.batch_size]
                for start in range(0, len(order), self.batch_size)]

    def _hidden_buffer(self, rows: int) -> torch.Tensor:
        return torch.empty(rows, self._head_weight.shape[1], dtype=self._head_weight.dtype,
                           device=self._device())

    def _last_hidden(self, sequences: list[list[int]], run) -> torch.Tensor:
        """[len(sequences), D]: the final hidden state at each sequence's last token, from
        run(right-padded ids [b, L]) -> [b, L, D] over batches of batch_size."""
        device = self._device()
        hidden = self._hidden_buffer(len(sequences))
        for chunk in self._batches(sequences):
            ids, last = _right_pad([sequences[j] for j in chunk], device)
            hidden[chunk] = run(ids)[torch.arange(len(chunk), device=device), last].to(hidden.dtype)
        return hidden

    def _last_hidden_packed(self, prefix_length: int, prefix_kv, suffixes: list[list[int]]):
        """As _last_hidden, each batch of suffixes packed into one sequence after the prefix,
        attending to its keys and values in place (prefix_attention.py): no padding in
        the linear layers."""
        device = self._device()
        decoder = self._decoder()
        hidden = self._hidden_buffer(len(suffixes))
        for chunk in self._batches(suffixes):
            lengths = [len(suffixes[j]) for j in chunk]
            ids = torch.tensor([[t for j in chunk for t in suffixes[j]]], device=device)
            positions = torch.tensor([[prefix_length + i for n in lengths for i in range(n)]],
                                     device=device)
            last = torch.tensor(lengths, device=device).cumsum(0) - 1
            with prefix_attention.use_prefix(self.model, prefix_kv, lengths):
                out = decoder(input_ids=ids, position_ids=positions, use_cache=False)
            hidden[chunk] = out.last_hidden_state[0, last].to(hidden.dtype)
        return hidden


@contextlib.contextmanager
def _suffix_attention(model, device: torch.device):
    """On the CPU, attends a batch of short suffixes to a long cached prefix with the eager
    implementation: torch's CPU SDPA kernel took 3x as long for that shape (a few queries,
    hundreds of keys, an explicit mask), and the two agree to 1e-6. The model's own setting
    is restored afterwards."""
    config = model.config
    if device.type != "cpu" or getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


def _cache_argument(decoder, cache) -> dict:
    """transformers 5 renamed the forward argument `past_key_values` to `cache`."""
    params = inspect.signature(decoder.forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def _output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out["past_key_values"]


def _right_pad(seqs: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """[b, max len] ids padded with each row's own last id (any id would do: see the module
    docstring), and each row's last real position."""
    length = max(len(s) for s in seqs)
    ids = torch.tensor([s + [s[-1]] * (length - len(s)) for s in seqs], device=device)
    last = torch.tensor([len(s) - 1 for s in seqs], device=device)
    return ids, last


def _check_lm_head(model) -> None:
    """judge_scores computes softmax(hidden @ W.T + b); refuse heads that do more."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling",
                 "output_multiplier_scale"):
        if getattr(config, attr, None) not in (None, 1, 1.0):
            raise ValueError(f"the judge's LM head applies {attr}={getattr(config, attr)!r}, "
                             "which ramo's judge_scores does not model; use another judge")
    if model.get_output_embeddings() is None:
        raise ValueError(f"{type(model).__name__} has no LM head; give a causal LM")


def model_fingerprint(model) -> str:
    """sha256 (16 hex digits) of the model's class, config and a strided sample of every
    parameter: cheap, yet any fine-tune or other checkpoint changes it."""
    return _fingerprint(type(model).__name__, model.config.to_dict(),
                        sorted(model.state_dict().items()))


def checkpoint_fingerprint(path: str | os.PathLike, dtype: torch.dtype) -> str:
    """The `model_fingerprint` of the causal LM that `from_pretrained(path, dtype=dtype)`
    loads, read from the folder's safetensors files one tensor at a time: for an engine that
    loads the weights itself (vLLM), so that its ratings and the transformers engine's share
    a store. The model is built on the meta device for its parameter names and ties."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no .safetensors files to fingerprint the judge from")
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # A tied parameter is one object under several names; the file holds one of them.
    names_of: dict[int, list[str]] = {}
    for name, param in skeleton.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    aliases = {name: names for names in names_of.values() for name in names}
    with contextlib.ExitStack() as stack:  # each file opened once, read tensor by tensor
        where = {}
        for file in files:
            handle = stack.enter_context(safe_open(file, "pt"))
            where.update((key, handle) for key in handle.keys())

        def tensors():
            for name, meta in sorted(skeleton.state_dict().items()):
                stored = next((n for n in aliases.get(name, [name]) if n in where), None)
                if stored is None:
                    raise ValueError(f"{folder}: the checkpoint has no tensor {name!r} (nor a "
                                     "weight tied to it): it cannot be fingerprinted as the "
                                     "transformers engine would load it")
                yield name, where[stored].get_tensor(stored).to(meta.dtype)

        return _fingerprint(type(skeleton).__name__, skeleton.config.to_dict(), tensors())


def _fingerprint(class_name: str, config: dict, tensors) -> str:
    h = hashlib.sha256(class_name.encode())
    # Where the model was loaded from and which transformers wrote its config say nothing
    # about the model: the same weights must keep their ratings across paths and upgrades.
    for key in ("_name_or_path", "transformers_version"):
        config.pop(key, None)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, p in tensors:
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
