"""`ramo study selection` and ramo.study: each strategy's labels against hand computations, the
bootstrap interval, the calibrations' algebra, the synthetic set's known ordering, and the
command on synthetic and on stored ratings."""

from __future__ import annotations

import json

import pytest
import torch

from python_tests.test_ratings_store import add
from ramo.cli import main
from ramo.ratings import RatingStore, Ratings
from ramo.study import (agreement, bootstrap, calibrated, judge_agreement, selection_study,
                        strategy_margins, synthetic_set)


def _scores(n=6, r=5, seed=0) -> torch.Tensor:
    return torch.rand(n, 2, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_margins_of_each_strategy_by_hand():
    scores = torch.tensor([[[0.9, 0.0, 0.1, 0.5], [0.1, 0.0, 0.4, 0.5]]])  # one pair, R = 4
    relevance = torch.tensor([[0.0, 1.0, 0.9, 0.0]])
    by_hand = {  # each strategy's k = 1 rule, and its a - b
        # criteria 0.5 |a - b| + relevance: rule 0 0.4, rule 1 1.0, rule 2 1.05, rule 3 0
        "max-discrepancy + relevance": 0.1 - 0.4,
        "max-discrepancy": 0.9 - 0.1,  # rule 0: |a - b| = 0.8 is the largest
        "relevance": 0.0,              # rule 1 (relevance 1.0), where a = b
    }
    for strategy, want in by_hand.items():
        got = strategy_margins(strategy, scores, relevance, 1)
        assert got.shape == (1, 1) and got.item() == pytest.approx(want), strategy
    total = strategy_margins("all rules", scores, relevance, 1)
    assert total.item() == pytest.approx(float(scores[0, 0].sum() - scores[0, 1].sum()))
    draws = strategy_margins("random", scores, relevance, 2, random_draws=7)
    assert draws.shape == (7, 1)
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_margins("best", scores, relevance, 1)


def test_agreement_counts_ties_as_wrong():
    margins = torch.tensor([[1.0, -1.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 0, 1])
    assert agreement(margins, labels).tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_bootstrap_interval():
    values = torch.tensor([[1.0] * 30 + [0.0] * 70])
    mean, low, high = bootstrap(values, samples=500)
    assert mean == pytest.approx(0.3) and low < 0.3 < high and 0.15 < low and high < 0.45
    assert bootstrap(torch.ones(1, 10)) == (1.0, 1.0, 1.0)
    # draws are averaged per pair first: two draws disagreeing on every pair give 0.5 each
    mean, low, high = bootstrap(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert (mean, low, high) == (0.5, 0.5, 0.5)


def _ratings(scores: torch.Tensor) -> Ratings:
    n, _, r = scores.shape
    p_yes = (scores + 1) / 4
    p_no = (1 - scores) / 4
    return Ratings(pair_ids=[f"p{i}" for i in range(n)], rule_ids=[f"r{j}" for j in range(r)],
                   p_yes=p_yes, p_no=p_no, p_other=torch.full_like(scores, 0.5),
                   score=p_yes - p_no, relevance=torch.full_like(scores, 0.5))


def test_calibrations():
    ratings = _ratings(_scores())
    diff = lambda s: s[:, 0] - s[:, 1]  # noqa: E731
    torch.testing.assert_close(calibrated(ratings, "none"), ratings.score)
    # per-rule centering cancels in every pairwise difference
    torch.testing.assert_close(diff(calibrated(ratings, "rule-centered")), diff(ratings.score))
    centered = calibrated(ratings, "response-centered")
    torch.testing.assert_close(centered.sum(2), torch.zeros(6, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(calibrated(ratings, "choices"), ratings.score / 1.0)  # total 1
    torch.testing.assert_close(calibrated(ratings, "log-odds"),
                               (ratings.p_yes.log() - ratings.p_no.log()))
    with pytest.raises(ValueError, match="unknown calibration"):
        calibrated(ratings, "z-score")


def test_judge_agreement_per_rule_and_all_rules():
    # rule 0 always names the better response, rule 1 never, rule 2 ties
    labels = torch.tensor([0, 1, 0, 1])
    sign = (1 - 2 * labels).float()
    scores = torch.zeros(4, 2, 3)
    scores[:, 0, 0], scores[:, 0, 1] = 0.5 * sign, -0.2 * sign
    out = judge_agreement(scores, labels, samples=200)
    assert (out["single_rule_best"], out["single_rule_mean"]) == (1.0, pytest.approx(1 / 3))
    assert out["all_rules"] == 1.0 and out["pairs"] == 4 and out["rules"] == 3


def test_synthetic_set_shows_the_method_ordering():
    data = synthetic_set(1500, 100, noise=0.05, seed=1)
    assert data.scores.shape == (1500, 2, 100) and data.relevance.shape == (1500, 100)
    assert int(data.critical.sum(1).min()) >= 1 and int(data.critical.sum(1).max()) <= 3
    rows = {(row.strategy, row.k): row for row in selection_study(
        data.scores, data.labels, data.relevance, ks=(5,), samples=200, random_draws=5)}
    method, everything = rows["max-discrepancy + relevance", 5], rows["all rules", 5]
    random = rows["random", 5]
    assert method.low > everything.high and everything.low > random.high
    assert random.agreement < 0.6 and method.agreement > 0.95


def test_selection_study_checks_its_input():
    scores = _scores()
    with pytest.raises(ValueError, match=r"labels must be N values"):
        selection_study(scores, torch.tensor([0, 1, 2, 0, 1, 0]))
    scores[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        selection_study(scores, torch.zeros(6, dtype=torch.long))


def test_command_on_synthetic_sets(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "selection", "--synthetic", "--noise", "0.05,0.3",
                 "--synthetic-pairs", "300", "-k", "1,5", "--samples", "100",
                 "--out", str(out)]) == 0
    record = json.loads((out / "selection_study.json").read_text())
    assert [s["noise"] for s in record["studies"]] == [0.05, 0.3]
    assert len(record["studies"][0]["rows"]) == 5 * 2
    for i in (0, 1):
        assert (out / f"selection_study_{i}.png").read_bytes().startswith(b"\x89PNG")
    assert "| max-discrepancy + relevance |" in (out / "selection_study.md").read_text()
    assert "synthetic, noise 0.05 (300 pairs)" in capsys.readouterr().out


def test_command_on_stored_ratings(tmp_path, capsys):
    n, rules = 12, [{"id": f"r{j}", "text": f"rule {j}"} for j in range(6)]
    scores = _scores(n, 6, seed=3)
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"q{i}", "response_a": "a", "response_b": "b",
             "label": i % 2 if i < 10 else None} for i in range(n)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "rules.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rules))
    store = tmp_path / "ratings.sqlite"
    with RatingStore(store, judge_fingerprint="j", template_fingerprint="t") as s:
        add(s, [(f"p{i}", side, f"r{j}", 0.3, 0.3, 0.4, float(scores[i, side, j]), 0.5)
               for i in range(n) for side in (0, 1) for j in range(6)], pairs=rows)
    args = ["study", "selection", "--pairs", str(pairs), "--rules", str(tmp_path / "rules.jsonl"),
            "--ratings", str(store), "-k", "1,3", "--samples", "50", "--out",
            str(tmp_path / "out")]
    assert main(args) == 0
    study = json.loads((tmp_path / "out" / "selection_study.json").read_text())["studies"][0]
    assert (study["pairs"], study["unlabeled_left_out"]) == (10, 2)
    labels = torch.tensor([i % 2 for i in range(10)])
    want = agreement(strategy_margins("max-discrepancy", scores[:10], None, 3), labels).mean()
    got = {(r["strategy"], r["k"]): r["agreement"] for r in study["rows"]}
    # relevance is the same for every rule here, so the method's pick is max-discrepancy's
    assert got["max-discrepancy + relevance", 3] == pytest.approx(float(want))
    capsys.readouterr()
    assert main(args + ["--calibration", "response-centered"]) == 0
    study = json.loads((tmp_path / "out" / "selection_study.json").read_text())["studies"][0]
    assert "all rules" not in {r["strategy"] for r in study["rows"]}
    assert main(["study", "selection", "--pairs", str(pairs), "--out", str(tmp_path / "x")]) == 2
    assert "--rules, --ratings needed (or --synthetic)" in capsys.readouterr().err


def test_stored_ratings_of_a_changed_text_are_refused(tmp_path, capsys):
    """The study reads a pair's ratings only for the text rated: a labeled pair whose response
    changed under its id is refused, naming it; unchanged pairs read as before."""
    from ramo.io import Pair, Rule
    from ramo.study import labeled_ratings

    scores = _scores(4, 3, seed=5)
    pairs = [Pair(f"p{i}", f"q{i}", f"a{i}", f"b{i}", i % 2) for i in range(4)]
    rules = [Rule(f"r{j}", f"rule {j}") for j in range(3)]
    store = tmp_path / "ratings.sqlite"
    with RatingStore(store, judge_fingerprint="j", template_fingerprint="t") as s:
        add(s, [(p.id, side, r.id, 0.3, 0.3, 0.4, float(scores[i, side, j]), 0.5)
               for i, p in enumerate(pairs) for side in (0, 1) for j, r in enumerate(rules)],
            pairs=pairs)
    got, _, labels, _ = labeled_ratings(pairs, rules, store)
    assert torch.equal(got, scores) and labels.tolist() == [0, 1, 0, 1]
    changed = [*pairs[:2], Pair("p2", "q2", "a2", "CHANGED", 0), pairs[3]]
    with pytest.raises(ValueError, match="pair 'p2' side 1 is bound .*new pair id"):
        labeled_ratings(changed, rules, store)
    (tmp_path / "rules.jsonl").write_text("".join(
        json.dumps({"id": r.id, "text": r.text}) + "\n" for r in rules))
    (tmp_path / "changed.jsonl").write_text("".join(json.dumps(
        {"id": p.id, "prompt": p.prompt, "response_a": p.response_a, "response_b": p.response_b,
         "label": p.label}) + "\n" for p in changed))
    assert main(["study", "selection", "--pairs", str(tmp_path / "changed.jsonl"), "--rules",
                 str(tmp_path / "rules.jsonl"), "--ratings", str(store), "-k", "1",
                 "--samples", "20", "--out", str(tmp_path / "out")]) == 2
    assert "pair 'p2' side 1 is bound" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---- `ramo study selection`'s flags: checked up front (CLI review) ---------------------------

def test_cli_refuses_no_synthetic_pairs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["study", "selection", "--synthetic", "--synthetic-pairs", "0",
              "--out", str(tmp_path / "out")])
    assert exit.value.code == 2
    assert "argument --synthetic-pairs: must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_k_above_the_pool(tmp_path, capsys):
    assert main(["study", "selection", "--synthetic", "--synthetic-pairs", "20", "-k", "5,200",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "-k 200: k must be from 1 to the pool's 100 rules" in err, err
    assert not (tmp_path / "out").exists()


def test_cli_k_values_for_a_pool():
    from ramo.cli.study import _ks

    assert _ks(None, 4) == [1, 3, 4]  # ramo's defaults, those above the pool cut to it, once
    assert _ks(None, 100) == [1, 3, 5, 10, 20]
    assert _ks([2, 6], 6) == [2, 6]
    with pytest.raises(ValueError, match="-k 7,0: k must be from 1 to the pool's 6 rules"):
        _ks([1, 7, 0], 6)


def test_cli_help_names_the_plot_files(capsys):
    with pytest.raises(SystemExit):
        main(["study", "selection", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "selection_study_0.png" in text and "{md,json,png}" not in text
    assert "cut to it" in text
