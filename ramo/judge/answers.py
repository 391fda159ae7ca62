"""The judge's three answers (Yes / No / Irrelevant) as token ids.

The score of a rule is P(yes) - P(no) of the judge's next token, where each probability is the
sum over the answer word's single-token spellings, with and without a leading space (a judge
may put either after "Answer:" or after a chat template's assistant header).
"""

from __future__ import annotations

ANSWERS = ("yes", "no", "irrelevant")
DEFAULT_WORDS = {"yes": "Yes", "no": "No", "irrelevant": "Irrelevant"}


def check_answers(words: dict | None, ids: dict | None) -> None:
    """ValueError unless `words` maps answers to words (`answer_words`) and `ids` answers to
    one or more non-negative token ids: what can be checked without the tokenizer."""
    for name, given in (("answer_words", words), ("answer_ids", ids)):
        if given is not None and not isinstance(given, dict):
            raise ValueError(f"{name} must be a mapping of answers ({', '.join(ANSWERS)}), "
                             f"got {given!r}")
    answer_words(words)
    for answer, chosen in (ids or {}).items():
        if answer not in ANSWERS:
            raise ValueError(f"answer_ids names unknown answer {answer!r}; the answers are "
                             f"{ANSWERS}")
        if (not isinstance(chosen, (list, tuple)) or not chosen
                or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in chosen)):
            raise ValueError(f"answer_ids[{answer!r}] = {chosen!r}: give a list of one or more "
                             "token ids")


def answer_words(words: dict[str, str] | None) -> dict[str, str]:
    out = dict(DEFAULT_WORDS)
    for answer, word in (words or {}).items():
        if answer not in ANSWERS:
            raise ValueError(f"unknown answer {answer!r}; the answers are {ANSWERS}")
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"the word for answer {answer!r} must be a non-empty string")
        out[answer] = word.strip()
    return out


def with_judge_ids(judge_ids: dict[str, list[int]], words: dict | None,
                   ids: dict | None) -> dict[str, list[int]] | None:
    """The answer_ids a judge gets when its loader has ids of its own (`judge_ids`: the
    embedded judge's for "Irrelevant", which its tokenizer splits) and the user gave `words`
    and `ids`: the user's ids win for the answers they name, and an answer whose word the
    user changed is read from that word, not from ids of the default word."""
    check_answers(words, ids)
    chosen = answer_words(words)
    merged = {answer: list(given) for answer, given in judge_ids.items()
              if chosen[answer] == DEFAULT_WORDS[answer]}
    merged.update(ids or {})
    return merged or None


def resolve_answer_ids(tokenizer, words: dict[str, str],
                       overrides: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """{answer: sorted token ids}; `overrides` (checked by `check_answers`) replaces the lookup
    for the answers it names, each id in the tokenizer's vocabulary."""
    overrides = dict(overrides or {})
    vocab = len(tokenizer)
    ids = {}
    for answer in ANSWERS:
        if answer in overrides:
            chosen = sorted({int(i) for i in overrides[answer]})
            if any(i >= vocab for i in chosen):
                raise ValueError(f"answer_ids[{answer!r}] = {overrides[answer]!r}: give one or more "
                                 f"token ids in [0, {vocab})")
        else:
            chosen = _single_token_spellings(tokenizer, answer, words[answer])
        ids[answer] = chosen
    for i, first in enumerate(ANSWERS):
        for second in ANSWERS[i + 1:]:
            shared = set(ids[first]) & set(ids[second])
            if shared:
                raise ValueError(f"answers {first!r} and {second!r} share token ids {sorted(shared)}; "
                                 "pick other answer words or give answer_ids")
    return ids


def _single_token_spellings(tokenizer, answer: str, word: str) -> list[int]:
    found = set()
    for spelling in (word, " " + word):
        pieces = tokenizer(spelling, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            shown = [tokenizer.decode([p]) for p in pieces]
            raise ValueError(
                f"the judge's tokenizer writes {spelling!r} (answer {answer!r}) as {len(pieces)} "
                f"tokens {shown}, not one, so its probability is not one next-token probability. "
                f"Pick a single-token word with answer_words={{{answer!r}: ...}}, or name the ids "
                f"to sum with answer_ids={{{answer!r}: [...]}}.")
        found.add(int(pieces[0]))
    return sorted(found)
