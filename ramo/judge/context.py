"""The judge's context window: how long a rendered judge prompt may be, and what is done with
a conversation too long for it.

Every judge has a context limit (`context_limit`: its position embeddings, or what its
tokenizer states), and a prompt past it is read at positions the model was never trained on:
slow, and its scores mean nothing. `max_length` (the limit by default) bounds every rendered
sequence, instructions and rule included. A conversation that does not fit is cut in its
middle (`fit_conversation`), never the instructions or the rule: the prompt and the response
share the room (a part shorter than its half keeps all of it and leaves the rest to the other),
and each part that is cut keeps its start and its end around MARKER, so the judge sees how the
request opens and ends and how the response opens and ends.

Whether a conversation is cut depends on the conversation alone, not on the rules rated with
it: the judge keeps room for a rule of up to RULE_ROOM tokens (a quarter of max_length when
that is less) after it, so a response is cut the same way in `ramo rate` (R rules) and in the
adapter's application (k rules), and its ratings in a store are all of one text. Only a rule
longer than that room asks for more, and gets it.
"""

from __future__ import annotations

from typing import NamedTuple

# What stands where a part of the conversation was cut out.
MARKER = "\n[...]\n"
RULE_ROOM = 128
# Text limits that tokenizers state when they state none (transformers writes 10^30).
_NO_STATED_LIMIT = 10**9


class Truncation(NamedTuple):
    """A conversation that was cut: the rendered length without a rule (instructions and
    conversation) before the cut and after it, in the judge's tokens."""

    tokens: int
    kept: int


class ContextOverflowError(ValueError):
    """A conversation does not fit the judge's max_length and the policy is to refuse."""


def context_limit(config, tokenizer) -> int | None:
    """The longest sequence the judge reads: its position embeddings (max_position_embeddings
    or n_positions in its text config) and its tokenizer's stated model_max_length, whichever
    is less; None when neither says."""
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    limits = []
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < _NO_STATED_LIMIT:
        limits.append(stated)
    return min(limits) if limits else None


def rule_room(max_length: int) -> int:
    return min(RULE_ROOM, max_length // 4)


def fit_conversation(renderer, prompt: str, response: str, *, length: int, max_length: int,
                     room: int) -> tuple[str, str, Truncation]:
    """(prompt, response) cut in their middles so that the judge's prompt without a rule
    (`bare_length`) is at most max_length - `room` (the rule's) tokens; `length` is its
    length uncut.

    The cut falls at the tokenizer's own token boundaries (character offsets of a fast
    tokenizer; decoded pieces otherwise). Re-tokenising the joined text can merge tokens
    across a cut, so the result is measured and cut again until it fits (a token or two a
    round). ValueError when the instructions alone leave no room for a conversation.
    """
    tokenizer = renderer.tokenizer
    parts = [_token_spans(tokenizer, prompt), _token_spans(tokenizer, response)]
    sizes = [len(p) for p in parts]
    marker = len(_token_spans(tokenizer, MARKER))
    limit = max_length - room
    # length less the conversation: the instructions and template, roughly
    target = _conversation_room(tokenizer, fixed=length - sum(sizes), max_length=max_length,
                                room=room)
    for _ in range(16):
        shares = _shares(sizes, target)
        texts = [text if share >= size else _cut_middle(text, spans, max(share - marker, 0))
                 for text, spans, size, share in zip((prompt, response), parts, sizes, shares)]
        kept = bare_length(renderer, *texts)
        if kept <= limit:
            return texts[0], texts[1], Truncation(tokens=length, kept=kept)
        target -= kept - limit
    raise RuntimeError(f"could not cut the conversation to {limit} tokens")  # never seen


def check_room(renderer, *, max_length: int, room: int) -> None:
    """ValueError when max_length leaves no room for a conversation after the judge's
    instructions (measured around a one-word conversation) and `room` tokens for the rule:
    found before anything is rated, since every conversation that needs a cut would fail."""
    probe = "x"
    fixed = bare_length(renderer, probe, probe) - 2 * len(_token_spans(renderer.tokenizer, probe))
    _conversation_room(renderer.tokenizer, fixed=fixed, max_length=max_length, room=room)


def _conversation_room(tokenizer, *, fixed: int, max_length: int, room: int) -> int:
    """The tokens left for the conversation after `fixed` tokens of instructions and `room`
    for the rule; ValueError when too few for a conversation cut in its middle (MARKER and
    two tokens of each part on either side)."""
    target = max_length - room - fixed
    need = 2 * (len(_token_spans(tokenizer, MARKER)) + 2)
    if target < need:
        raise ValueError(
            f"max_length {max_length} leaves {max(target, 0)} tokens for the conversation after "
            f"the judge's instructions ({fixed} tokens) and the room for the rule ({room}), "
            f"fewer than the {need} it needs; give a larger max_length (--max-length, or "
            "judge.max_length in a pipeline config), none for the judge's own limit, or a "
            "judge with a longer context")
    return target


def bare_length(renderer, prompt: str, response: str) -> int:
    """The rendered length of the judge's prompt without a rule's words: all but the rule."""
    prefix, (suffix,) = renderer.ids(prompt, response, [""])
    return len(prefix) + len(suffix)


def _shares(sizes: list[int], target: int) -> list[int]:
    """Water filling of `target` tokens between the prompt and the response."""
    p, r = sizes
    half = target // 2
    if p <= half:
        return [p, target - p]
    if r <= target - half:
        return [target - r, r]
    return [half, target - half]


def _token_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Each token's (start, end) in `text`. A slow tokenizer gives no offsets: its tokens
    are decoded one by one and laid end to end (close enough for where to cut)."""
    if getattr(tokenizer, "is_fast", False):
        return list(tokenizer(text, add_special_tokens=False,
                              return_offsets_mapping=True)["offset_mapping"])
    spans, at = [], 0
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        size = len(tokenizer.decode([token]))
        spans.append((at, min(at + size, len(text))))
        at += size
    return spans


def _cut_middle(text: str, spans: list[tuple[int, int]], keep: int) -> str:
    """`text` with its first ceil(keep / 2) and last floor(keep / 2) tokens around MARKER."""
    head, tail = keep - keep // 2, keep // 2
    start = spans[head - 1][1] if head else 0
    end = spans[len(spans) - tail][0] if tail else len(text)
    return text[:start] + MARKER + text[max(end, start):]
