"""Rewards for RL from ramo's reward models, in TRL GRPOTrainer's `reward_funcs` convention.

TRL calls each reward function with keywords, `prompts` and `completions` (text, or lists of
{role, content} messages in conversational data sets), `completion_ids`, the trainer state,
logging hooks and every other data-set column, and expects one float per completion.
`RamoReward` scores them with a ramo reward model, its input formatted exactly as ramo's
training and evaluation format it (`ramo.tokenization.encode`; handing a ramo encoder reward
model to GRPO as a model would let TRL join prompt and completion its own way):

  - a single-score reward model: its score of (prompt, completion);
  - a rule-head reward model: the summed scores of k of its rule heads, the k the Rule
    Adapter picks for the prompt (`model(**inputs, rules=idx)`), the same k for every
    completion of a prompt, so a group of completions is compared on the same rules; without
    an adapter, the fixed aggregation over all heads.

Batched, on the model's device, without gradients.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch


class RamoReward:
    """A reward function for TRL (`GRPOTrainer(reward_funcs=[RamoReward.from_pretrained(...)])`).

    model, tokenizer: a ramo reward model (single score, `num_labels=1`, or a
        `RuleHeadRewardModel`) and its tokenizer, on the device to score on.
    adapter: a `RuleAdapter` over the rule-head model's rules (rule-head models only); k: how
        many rules it picks per prompt (default: its own k).
    max_length: tokens per (prompt, completion), as in training.
    """

    def __init__(self, model, tokenizer, *, adapter=None, k: int | None = None,
                 batch_size: int = 16, max_length: int = 256):
        from ramo.models import RuleHeadRewardModel

        self.rule_heads = isinstance(model, RuleHeadRewardModel)
        if not self.rule_heads:
            outputs = getattr(getattr(model, "config", None), "num_labels", None)
            if outputs != 1:
                raise ValueError(f"not a reward model: a single-score model has one output "
                                 f"(num_labels=1), this one {outputs}; a rule-head model is a "
                                 f"RuleHeadRewardModel")
            if adapter is not None:
                raise ValueError("a Rule Adapter picks the rules of a rule-head reward model; "
                                 "this is a single-score model")
        elif adapter is not None and list(adapter.rule_ids) != list(model.rule_ids):
            raise ValueError(f"the adapter's {len(adapter.rule_ids)} rules are not the reward "
                             f"model's {len(model.rule_ids)} (ids and order must match)")
        from ramo.checks import positive_integer
        from ramo.tokenization import check_max_length

        positive_integer("batch_size", batch_size)
        positive_integer("max_length", max_length)
        # Here, not at the first long completion in the middle of an RL run.
        check_max_length(model, max_length)
        self.model, self.tokenizer, self.adapter = model.eval(), tokenizer, adapter
        self.k = None if adapter is None else adapter.resolve_k(k)
        self.batch_size, self.max_length = batch_size, max_length
        # TRL logs each reward function under its __name__.
        self.__name__ = "ramo_rule_heads" if self.rule_heads else "ramo_reward"

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, adapter: str | os.PathLike | None = None,
                        device: str | torch.device | None = None, **kwargs) -> "RamoReward":
        """From a folder `ramo rm train` wrote (either kind) and optionally an adapter folder;
        max_length defaults to the one the model was trained with."""
        from ramo.adapter import RuleAdapter
        from ramo.device import default_device
        from ramo.models import load_any_reward_model
        from ramo.reward.train import trained_max_length

        model, tokenizer = load_any_reward_model(path)
        device = default_device(device)
        model = model.to(device)
        trained = trained_max_length(path)
        if "max_length" not in kwargs and trained is not None:
            kwargs["max_length"] = trained
        loaded = None if adapter is None else RuleAdapter.from_pretrained(adapter, device=device)
        return cls(model, tokenizer, adapter=loaded, **kwargs)

    @torch.inference_mode()
    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        """One reward per completion. kwargs (completion_ids, trainer_state, other columns)
        are TRL's and not needed here."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [_prompt(p, n) for n, p in enumerate(prompts)]
        responses = [_completion(c, n) for n, c in enumerate(completions)]
        if not self.rule_heads:
            from ramo.evaluation import score_responses

            scores = score_responses(self.model, self.tokenizer, texts, responses,
                                     batch_size=self.batch_size, max_length=self.max_length)
            return scores.tolist()
        rules = None if self.adapter is None else self.rules_for(texts)
        return self.model.score(self.tokenizer, texts, responses, rules,
                                batch_size=self.batch_size, max_length=self.max_length).tolist()

    def rules_for(self, prompts: Sequence) -> torch.Tensor:
        """int64 [N, k]: the adapter's k rules for each prompt (text or checked messages),
        read from the prompt alone (a pair with both responses empty), each distinct prompt
        once."""
        from ramo.io import Pair
        from ramo.io.conversations import conversation_text

        texts = [p if isinstance(p, str) else conversation_text(p) for p in prompts]
        distinct = list(dict.fromkeys(texts))
        picked = self.adapter.predict([Pair(str(n), text, "", "")
                                       for n, text in enumerate(distinct)], k=self.k)
        index = {text: n for n, text in enumerate(distinct)}
        return picked[[index[text] for text in texts]]


def _prompt(value, n: int):
    """A prompt as `encode` takes it: text, or its messages."""
    from ramo.io.conversations import check_messages

    if isinstance(value, str):
        return value
    messages, problems = check_messages(value, f"prompts[{n}]")
    if problems:
        raise ValueError("; ".join(problems))
    return messages


def _completion(value, n: int) -> str:
    """A completion's text: a string, or one assistant message (TRL's conversational form)."""
    from ramo.io.conversations import check_messages, response_of

    if isinstance(value, str):
        return value
    messages, problems = check_messages(value, f"completions[{n}]")
    if not problems:
        text, problems = response_of(messages, f"completions[{n}]")
        if not problems:
            return text
    raise ValueError("; ".join(problems))
