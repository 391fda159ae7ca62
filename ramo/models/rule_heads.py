"""RuleHeadRewardModel: a shared backbone with one linear head per rule (docs/architecture.md,
"Rule-head reward model").

Instead of asking a judge, the model scores every rule itself: s_r(x) = w_r . h(x) + b_r,
where h(x) is the backbone's pooled hidden state of (prompt, response) x. Training follows
the method's labels: for a pair, the k rules on which the two responses' head scores differ
most are selected (max discrepancy), a response's reward is its summed score on them, and
the loss is Bradley-Terry on those rewards. The per-rule GEMM, the discrepancy, the top-k
and the aggregation are the fused `ramo.ops.rule_head_select`, whose backward touches only
the k selected heads per pair. When judge ratings of the pair are there, the heads can also
be regressed onto them (`regression_weight`), so each head keeps the meaning of its rule.

Scoring:
  - a pair (evaluation, `compare`): exactly the training reward: select k rules by max
    discrepancy between the two responses, compare the sums (margin > 0: A is better).
  - one response (`forward`, `score`): with `rules` (e.g. the Rule Adapter's k rules for the
    prompt) the sum of those heads, which is what training optimised for a pair; without,
    the fixed aggregation `k * mean over all R heads`, on the same scale. Only differences
    between responses to the same prompt mean anything.

Saved as a folder: the backbone (`save_pretrained`), the heads (rule_heads.safetensors) and
ramo_rule_heads.json (rule ids, pooling, k).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import torch

from ramo.checks import positive_integer
from ramo.models.eval_mode import evaluating

CONFIG_FILE = "ramo_rule_heads.json"
HEADS_FILE = "rule_heads.safetensors"
POOLINGS = ("auto", "last", "first", "mean")


class RuleHeadOutput(NamedTuple):
    logits: torch.Tensor | None  # [B, 1]: the single-response score (see the module docstring)
    hidden: torch.Tensor         # [B, D]: the pooled hidden state the heads read
    scores: torch.Tensor | None  # [B, R]: every head's score


def default_pooling(config) -> str:
    """"mean" for encoders (what sentence encoders such as MiniLM are trained with), "last"
    (the last real token) for decoders, whose last token is the only one that sees all."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "mean" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


class RuleHeadRewardModel(torch.nn.Module):
    """A backbone (any transformers AutoModel) with R rule heads.

    rule_ids: the pool's ids, one head each, in pool order. pooling: "auto", "last",
    "first" or "mean". k: the rules `rule_head_select` selects per pair in training and pair
    comparison, by the discrepancy of the heads' scores alone (the heads are the judge here;
    there is no relevance to regularise it, and a weight on the discrepancy alone would not
    change the ranking).
    """

    def __init__(self, backbone, rule_ids, *, pooling: str = "auto", k: int = 5):
        super().__init__()
        rule_ids = [str(r) for r in rule_ids]
        if not rule_ids or len(set(rule_ids)) != len(rule_ids):
            raise ValueError("rule_ids must be a non-empty list of distinct ids")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(rule_ids):
            raise ValueError(f"k must be an integer from 1 to the {len(rule_ids)} rules, got {k!r}")
        self.backbone = backbone
        self.config = backbone.config  # what the Trainer and accelerate look for
        self.rule_ids = rule_ids
        self.pooling = default_pooling(backbone.config) if pooling == "auto" else pooling
        self.k = k
        hidden = backbone.config.get_text_config().hidden_size
        self.heads = torch.nn.Linear(hidden, len(rule_ids), dtype=backbone.dtype)

    def activation_checkpointing_enable(self, **kwargs) -> None:
        """The Trainer's `activation_checkpointing` (`--gradient-checkpointing`): the
        backbone's blocks are checkpointed; the heads are one small GEMM."""
        self.backbone.activation_checkpointing_enable(**kwargs)

    @property
    def is_activation_checkpointing(self) -> bool:
        return self.backbone.is_activation_checkpointing

    # ---- building and saving -------------------------------------------------------------

    @classmethod
    def from_backbone(cls, name_or_path: str | os.PathLike = "default", rule_ids=(), *,
                      seed: int | None = None, dtype: torch.dtype | None = None, **kwargs):
        """(model, tokenizer): a backbone ("default": the embedded MiniLM; a folder; a hub
        id) with new heads, initialised from `seed`."""
        from transformers import AutoModel

        from ramo.encoders import resolve
        from ramo.tokenization import load_tokenizer

        path = resolve(name_or_path)
        tokenizer = load_tokenizer(path)
        backbone = AutoModel.from_pretrained(path, **({"dtype": dtype} if dtype else {}))
        if backbone.config.pad_token_id is None:
            backbone.config.pad_token_id = tokenizer.pad_token_id
        if seed is not None:
            torch.manual_seed(seed)
        return cls(backbone, rule_ids, **kwargs), tokenizer

    def save_pretrained(self, folder: str | os.PathLike, **kwargs) -> None:
        """Writes in place (a Trainer's output folder holds its checkpoints beside the model,
        so it cannot be replaced whole): the config that makes the folder a rule-head model
        (`is_rule_head_folder`) is removed first and written last, so a save killed halfway
        leaves no folder that loads as one with another save's heads or backbone."""
        from safetensors.torch import save_file

        from ramo.io.atomic import atomic_path, write_text

        if hasattr(self.backbone, "peft_config"):
            raise ValueError("the backbone carries LoRA adapters: merge them first "
                             "(ramo.models.lora.merge_lora), or from_pretrained cannot read it")
        folder = Path(folder)
        (folder / CONFIG_FILE).unlink(missing_ok=True)
        self.backbone.save_pretrained(folder, **kwargs)
        with atomic_path(folder / HEADS_FILE) as tmp:
            save_file({"weight": self.heads.weight.detach().contiguous(),
                       "bias": self.heads.bias.detach().contiguous()}, str(tmp))
        write_text(folder / CONFIG_FILE, json.dumps({
            "rule_ids": self.rule_ids, "pooling": self.pooling, "k": self.k}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, dtype: torch.dtype | None = None):
        """(model, tokenizer) from a folder that save_pretrained wrote."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        from ramo.tokenization import load_tokenizer

        folder = Path(folder)
        if not is_rule_head_folder(folder):
            raise ValueError(f"{folder}: not a rule-head reward model (no {CONFIG_FILE})")
        settings = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        # Folders saved before these were dropped hold them; without a relevance they never
        # changed which rules were selected.
        for unused in ("discrepancy_weight", "relevance_weight"):
            settings.pop(unused, None)
        backbone = AutoModel.from_pretrained(folder, **({"dtype": dtype} if dtype else {}))
        model = cls(backbone, settings.pop("rule_ids"), **settings)
        heads = load_file(str(folder / HEADS_FILE))
        if tuple(heads["weight"].shape) != tuple(model.heads.weight.shape):
            raise ValueError(f"{folder}: {HEADS_FILE} holds heads of shape "
                             f"{tuple(heads['weight'].shape)}, the config says "
                             f"{tuple(model.heads.weight.shape)}")
        model.heads.load_state_dict(heads)
        return model.eval(), load_tokenizer(folder)

    # ---- the forward pass ----------------------------------------------------------------

    def pool(self, input_ids, attention_mask, **inputs) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        states = out.last_hidden_state
        if self.pooling == "first":
            return states[:, 0]
        if self.pooling == "mean":
            from ramo.encoders import mean_pool

            return mean_pool(states, attention_mask)
        # "last": the last real token, whichever side the padding is on.
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.bool() * positions).argmax(1)
        return states[torch.arange(states.shape[0], device=states.device), last]

    def forward(self, input_ids, attention_mask, rules: torch.Tensor | None = None,
                pairs: bool = False, **inputs):
        """RuleHeadOutput of each row; rules: None, or an integer [B, k] tensor of rule
        indices whose heads are summed for each row.

        pairs=True: rows 0..B/2-1 are the A sides of B/2 pairs and the rest their B sides, in
        the same order; returns the pairs' RuleHeadSelection (`select`). Training goes this
        way, so that the heads are used inside the forward pass that DDP wraps (else their
        gradients are never reduced across ranks) and their scores are computed once, by the
        fused op."""
        hidden = self.pool(input_ids, attention_mask, **inputs)
        if pairs:
            if rules is not None or hidden.shape[0] % 2:
                raise ValueError("pairs=True takes an even number of rows (A sides, then B "
                                 "sides) and no rules")
            half = hidden.shape[0] // 2
            return self.select(hidden[:half], hidden[half:])
        scores = self.heads(hidden)
        if rules is None:
            logits = scores.mean(-1, keepdim=True) * self.k
        else:
            logits = scores.gather(1, self._check_rules(rules, hidden.shape[0]).to(
                scores.device)).sum(-1, keepdim=True)
        return RuleHeadOutput(logits, hidden, scores)

    def _check_rules(self, rules, rows: int) -> torch.Tensor:
        """rules as given, unless it is not an integer [rows, k] tensor of indices in [0, R):
        then ValueError (gather would read a shorter tensor's rows for the first rows only,
        or truncate floats to indices)."""
        n_rules = len(self.rule_ids)
        if (not isinstance(rules, torch.Tensor) or rules.dim() != 2 or rules.shape[0] != rows
                or rules.shape[1] < 1 or rules.dtype.is_floating_point or rules.dtype.is_complex
                or rules.dtype == torch.bool):
            what = (f"a {rules.dtype} tensor of shape {tuple(rules.shape)}"
                    if isinstance(rules, torch.Tensor) else type(rules).__name__)
            raise ValueError(f"rules must be an integer tensor of shape [{rows}, k] (k >= 1, "
                             f"one row of rule indices per input row), got {what}")
        if rules.numel():
            low, high = (int(x) for x in rules.aminmax())
            if low < 0 or high >= n_rules:
                raise ValueError(f"rules holds an index outside [0, {n_rules}): {low}..{high}")
        return rules.long()

    def select(self, hidden_a: torch.Tensor, hidden_b: torch.Tensor):
        """The fused selection of this model's heads on two batches of pooled states."""
        from ramo.ops import rule_head_select

        return rule_head_select(hidden_a, hidden_b, self.heads.weight, self.heads.bias,
                                k=self.k)

    @torch.inference_mode()
    def compare(self, tokenizer, prompts, responses_a, responses_b, *, batch_size: int = 16,
                max_length: int = 256):
        """RuleHeadSelection of every pair (on the CPU), as in training, in eval mode."""
        from ramo.tokenization import check_max_length, encode, pad

        check_max_length(self, max_length)
        positive_integer("batch_size", batch_size)
        if not len(prompts) == len(responses_a) == len(responses_b):
            # zip would pair what is there and drop the rest
            raise ValueError(f"{len(prompts)} prompts, {len(responses_a)} responses a and "
                             f"{len(responses_b)} responses b: they must match")
        device = next(self.parameters()).device
        parts = []
        with evaluating(self):
            for start in range(0, len(prompts), batch_size):
                rows = [encode(tokenizer, p, r, max_length)
                        for side in (responses_a, responses_b)
                        for p, r in zip(prompts[start:start + batch_size],
                                        side[start:start + batch_size])]
                batch = {k: v.to(device) for k, v in pad(rows, tokenizer).items()}
                parts.append([t.cpu() for t in self(**batch, pairs=True)])
        from ramo.ops.rule_head_select import RuleHeadSelection

        return RuleHeadSelection(*(torch.cat(fields) for fields in zip(*parts)))

    @torch.inference_mode()
    def score(self, tokenizer, prompts, responses, rules: torch.Tensor | None = None, *,
              batch_size: int = 16, max_length: int = 256) -> torch.Tensor:
        """float32 [N] on the CPU: each response's `forward` score, on the rules of its row of
        `rules` ([N, k] indices; None: the fixed aggregation over all heads). The inputs are
        `ramo.tokenization.encode`d, as in training; batches in the given order."""
        from ramo.tokenization import check_max_length, encode, pad

        check_max_length(self, max_length)
        positive_integer("batch_size", batch_size)
        if len(prompts) != len(responses) or (rules is not None and len(rules) != len(prompts)):
            raise ValueError(f"{len(prompts)} prompts, {len(responses)} responses and "
                             f"{'no' if rules is None else len(rules)} rule rows: they must match")
        device = next(self.parameters()).device
        out = torch.empty(len(prompts), dtype=torch.float32)
        with evaluating(self):
            for start in range(0, len(prompts), batch_size):
                end = min(start + batch_size, len(prompts))
                rows = [encode(tokenizer, prompts[n], responses[n], max_length)
                        for n in range(start, end)]
                batch = {k: v.to(device) for k, v in pad(rows, tokenizer).items()}
                chosen = None if rules is None else rules[start:end]
                out[start:end] = self(**batch, rules=chosen).logits[:, 0].float().cpu()
        return out


def is_rule_head_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()
