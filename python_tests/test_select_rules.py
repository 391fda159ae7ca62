"""select_rules on every backend against the reference (docs/architecture.md, "Exactness")."""

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ramo
from ramo import backends
from ramo.ops._common import MAX_FAST_K
from ramo.ops.select_rules import RuleSelection
from python_tests.baselines import select_rules_eager

FAST_BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("triton", id="triton"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
FLOAT_FIELDS = ("criterion", "reward_a", "reward_b", "margin")


def device_for(backend: str) -> torch.device:
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def selection_extras(g, n, r, *, relevance="none", valid="none", ties=False):
    """(relevance, valid) in float64 / bool, drawn from generator g: none, shared [R] or
    per_row [N, R]; per-row masks include a row with no valid rule and one with a single
    valid rule. Shared with the rule_head_select tests."""
    rel = None
    if relevance == "shared":
        rel = torch.rand(r, generator=g, dtype=torch.float64)
    elif relevance == "per_row":
        rel = torch.rand(n, r, generator=g, dtype=torch.float64)
    if rel is not None and ties:
        rel = (rel * 4).round() / 4
    mask = None
    if valid == "shared":
        mask = torch.rand(r, generator=g) > 0.3
    elif valid == "per_row":
        mask = torch.rand(n, r, generator=g) > 0.4
        if n > 0:
            mask[0] = False  # a row with no valid rule
        if n > 1:
            mask[1] = False
            mask[1, r // 2] = True  # a row with one valid rule
    return rel, mask


def make_case(seed, n, r, dtype, *, ties=False, relevance="none", valid="none",
              noncontiguous=False, device="cpu"):
    """Scores, relevance and valid mask for one test case; NaN fills some invalid slots."""
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many equal criteria, so the tie rule decides
        a = torch.randint(-2, 3, (n, r), generator=g).double() * 0.5
        b = torch.randint(-2, 3, (n, r), generator=g).double() * 0.5
    else:
        a = torch.rand(n, r, generator=g, dtype=torch.float64) * 2 - 1
        b = torch.rand(n, r, generator=g, dtype=torch.float64) * 2 - 1
    rel, mask = selection_extras(g, n, r, relevance=relevance, valid=valid, ties=ties)
    if noncontiguous:  # transposed storage: same values, strides (1, n)
        a, b = a.t().contiguous().t(), b.t().contiguous().t()
    a, b = a.to(dtype), b.to(dtype)
    if mask is not None:  # invalid positions may hold anything
        full = mask if mask.dim() == 2 else mask.expand(n, r)
        a = a.masked_fill(~full, float("nan"))
    if rel is not None:
        rel = rel.to(torch.float32 if dtype != torch.float64 else dtype)
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return move(a), move(b), move(rel), move(mask)


def assert_matches(out: RuleSelection, ref: RuleSelection) -> None:
    assert torch.equal(out.indices.cpu(), ref.indices.cpu())
    assert torch.equal(out.preference.cpu(), ref.preference.cpu())
    for name in FLOAT_FIELDS:
        x, y = getattr(out, name).cpu(), getattr(ref, name).cpu()
        assert x.dtype == y.dtype, name
        torch.testing.assert_close(x, y, rtol=1e-6, atol=0, equal_nan=True, msg=name)


def run_both(backend, case, **kwargs):
    a, b, rel, valid = case
    out = ramo.select_rules(a, b, rel, valid=valid, backend=backend, **kwargs)
    ref = ramo.select_rules(a.cpu(), b.cpu(), None if rel is None else rel.cpu(),
                            valid=None if valid is None else valid.cpu(),
                            backend="reference", **kwargs)
    return out, ref


# --- agreement with the reference ---------------------------------------------------------

SWEEP_R = [1, 2, 3, 7, 31, 64, 100, 127, 257, 1000, 2048]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("r", SWEEP_R)
def test_matches_reference_sweep(backend, dtype, r):
    """Seeded sweep: odd R, k from 1 to min(R, 64), ties, relevance and valid variants."""
    device = device_for(backend)
    rng = torch.Generator().manual_seed(r * 7919 + DTYPES.index(dtype))
    ks = sorted({1, min(r, 2), min(r, 5), min(r, 16), min(r, MAX_FAST_K)})
    for case_no, k in enumerate(ks):
        pick = lambda options: options[int(torch.randint(len(options), (1,), generator=rng))]  # noqa: E731
        n = pick([1, 5, 17, 33])
        case = make_case(case_no + 100 * r, n, r, dtype, ties=case_no % 2 == 0,
                         relevance=pick(["none", "shared", "per_row"]),
                         valid=pick(["none", "shared", "per_row"]),
                         noncontiguous=case_no % 3 == 1, device=device)
        out, ref = run_both(backend, case, k=k)
        assert_matches(out, ref)


@pytest.mark.parametrize("backend", [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
    # Interpreted Triton takes too long over this many rows; on a GPU it is compiled.
    pytest.param("triton", id="triton", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_many_rows_match_reference(backend, dtype):
    """Past 4096 rows (where the CUDA backend turns to a thread per row): odd R, k up to 64,
    ties, relevance and valid variants."""
    device = device_for(backend)
    cases = [(4500, 100, 5, "shared", "none"), (4097, 3, 3, "none", "per_row"),
             (5000, 257, 16, "per_row", "shared"), (4200, 1000, 64, "shared", "per_row"),
             (4096, 64, 1, "none", "none")]
    for seed, (n, r, k, relevance, valid) in enumerate(cases):
        case = make_case(seed + 1000 * DTYPES.index(dtype), n, r, dtype, ties=seed % 2 == 0,
                         relevance=relevance, valid=valid, noncontiguous=seed == 2,
                         device=device)
        out, ref = run_both(backend, case, k=k, discrepancy_weight=0.75, relevance_weight=0.3,
                            tie_tolerance=0.01)
        assert_matches(out, ref)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("relevance", ["none", "shared", "per_row"])
@pytest.mark.parametrize("valid", ["none", "shared", "per_row"])
def test_matches_reference_masks(backend, relevance, valid):
    device = device_for(backend)
    for seed, (n, r, k) in enumerate([(40, 100, 5), (9, 300, 16), (12, 24, 24)]):
        case = make_case(seed, n, r, torch.float32, ties=seed == 1, relevance=relevance,
                         valid=valid, device=device)
        out, ref = run_both(backend, case, k=k, discrepancy_weight=0.75, relevance_weight=0.3)
        assert_matches(out, ref)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 40),
    r=st.integers(1, 300),
    k_frac=st.floats(0, 1),
    dtype=st.sampled_from(DTYPES),
    ties=st.booleans(),
    relevance=st.sampled_from(["none", "shared", "per_row"]),
    valid=st.sampled_from(["none", "shared", "per_row"]),
    noncontiguous=st.booleans(),
    seed=st.integers(0, 2**16),
    tie_tolerance=st.sampled_from([0.0, 0.25]),
)
def test_cpu_matches_reference_hypothesis(n, r, k_frac, dtype, ties, relevance, valid,
                                          noncontiguous, seed, tie_tolerance):
    k = 1 + int(k_frac * (min(r, MAX_FAST_K) - 1))
    case = make_case(seed, n, r, dtype, ties=ties, relevance=relevance, valid=valid,
                     noncontiguous=noncontiguous)
    out, ref = run_both("cpu", case, k=k, tie_tolerance=tie_tolerance)
    assert_matches(out, ref)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_empty_batch(backend):
    device = device_for(backend)
    a = torch.zeros(0, 10, device=device)
    out = ramo.select_rules(a, a, k=3, backend=backend)
    assert out.indices.shape == (0, 3) and out.criterion.shape == (0, 3)
    assert all(getattr(out, f).shape == (0,) for f in ("reward_a", "reward_b", "margin"))
    assert out.preference.dtype == torch.int8


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_a_negative_zero_weight_after_a_positive_one(backend):
    """-0.0 == 0.0 as numbers, but the criterion's sign bits follow the weight: a call with
    -0.0 after one with 0.0 must not reuse what was prepared for 0.0 (bit-equal to the
    reference, signs included)."""
    device = device_for(backend)
    a = torch.tensor([[1.0, 2.0, 3.0]], device=device)
    b = torch.tensor([[3.0, 1.0, 3.0]], device=device)
    for weight in (0.0, -0.0, 0.0):
        got = ramo.select_rules(a, b, k=3, discrepancy_weight=weight, backend=backend)
        want = ramo.select_rules(a, b, k=3, discrepancy_weight=weight, backend="reference")
        assert torch.equal(torch.signbit(got.criterion).cpu(), torch.signbit(want.criterion))


@pytest.mark.parametrize("backend", FAST_BACKENDS + [pytest.param("reference", id="reference")])
def test_padding_and_ties_by_hand(backend):
    device = device_for(backend)
    a = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]], device=device)
    b = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], device=device)
    valid = torch.tensor([[True, True, True, True], [False, True, False, False]], device=device)
    out = ramo.select_rules(a, b, k=3, valid=valid, backend=backend)
    # Row 0: criteria 0.5, 0.5, 0.5, 0: the three ties go lowest index first.
    # Row 1: one valid rule, then padding.
    assert out.indices.tolist() == [[0, 1, 2], [1, -1, -1]]
    assert out.criterion[1].tolist() == [0.25, -math.inf, -math.inf]
    assert out.reward_a.tolist() == [2.0, 0.5] and out.reward_b.tolist() == [1.0, 0.0]
    assert out.preference.tolist() == [1, 1]
    tied = ramo.select_rules(a, b, k=3, valid=valid, tie_tolerance=1.0, backend=backend)
    assert tied.preference.tolist() == [0, 0]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_extreme_values(backend, dtype):
    """Overflowing differences (inf criterion), and NaN criteria from 0 * inf, rank as -inf."""
    device = device_for(backend)
    big = torch.finfo(dtype).max
    a = torch.tensor([[big, -big, 0.0, 1.0, big], [big, 0.0, -big, big, 0.5]], dtype=dtype)
    b = -a.flip(1)
    for wd in (0.5, 0.0, 1e30):
        a_, b_ = a.to(device), b.to(device)
        out, ref = run_both(backend, (a_, b_, None, None), k=3, discrepancy_weight=wd)
        assert_matches(out, ref)
        rel = torch.tensor([1.0, -2.0, 3.0, 0.0, -1.0], dtype=torch.float32 if dtype != torch.float64 else dtype)
        out, ref = run_both(backend, (a_, b_, rel.to(device), None), k=5,
                            discrepancy_weight=wd, relevance_weight=-1e38)
        assert_matches(out, ref)


def test_relevance_dtype_is_upcast_not_rounded():
    """fp32 relevance beside fp16 scores keeps its precision (it is upcast, never cast down)."""
    a = torch.zeros(1, 2, dtype=torch.float16)
    rel = torch.tensor([1.0, 1.0 + 2**-20])
    for backend in ("cpu", "reference"):
        assert ramo.select_rules(a, a, rel, k=1, backend=backend).indices.item() == 1


# --- floats against an fp64 ground truth --------------------------------------------------

@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rewards_vs_fp64_ground_truth(backend, dtype):
    """Rewards are no further from fp64 truth than PyTorch's own sum in the same dtype."""
    device = device_for(backend)
    a, b, rel, _ = make_case(3, 64, 200, dtype, relevance="shared", device=device)
    out = ramo.select_rules(a, b, rel, k=16, backend=backend)
    idx = out.indices.clamp_min(0)
    truth = a.double().gather(1, idx).sum(1)
    torch_same_dtype = a.gather(1, idx).sum(1).double()
    err_ramo = (out.reward_a.double() - truth).abs().max().item()
    err_torch = (torch_same_dtype - truth).abs().max().item()
    assert err_ramo <= err_torch + 1e-6 * truth.abs().max().item()


# --- gradients, opcheck, torch.compile ----------------------------------------------------

@pytest.mark.parametrize("backend", FAST_BACKENDS + [pytest.param("reference", id="reference")])
def test_gradcheck_fp64(backend):
    device = device_for(backend)
    a, b, rel, valid = make_case(5, 6, 12, torch.float64, relevance="shared", valid="per_row",
                                 device=device)
    a = torch.nan_to_num(a, nan=0.0).requires_grad_()
    b = b.clone().requires_grad_()

    def rewards(a, b):
        out = ramo.select_rules(a, b, rel, k=4, valid=valid, backend=backend)
        return out.reward_a, out.reward_b, out.margin

    assert torch.autograd.gradcheck(rewards, (a, b), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_matches_reference_autograd(backend, dtype):
    device = device_for(backend)
    a, b, rel, valid = make_case(6, 20, 50, dtype, relevance="per_row", valid="per_row",
                                 device=device)
    a = torch.nan_to_num(a, nan=0.0)
    weights = torch.randn(3, 20, generator=torch.Generator().manual_seed(0)).to(device)
    grads = []
    for bk in (backend, "reference"):
        a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
        out = ramo.select_rules(a_, b_, rel, k=7, valid=valid, backend=bk)
        loss = (weights[0] * out.reward_a + weights[1] * out.reward_b
                + weights[2] * out.margin).sum()
        grads.append(torch.autograd.grad(loss, (a_, b_)))
    for got, want in zip(grads[0], grads[1]):
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", FAST_BACKENDS + [pytest.param("reference", id="reference")])
def test_inf_or_nan_reward_gradient_reaches_only_the_selected_rules(backend):
    """As in autograd of the reference: padding slots (index -1) and rows that select
    nothing get 0 from an inf or NaN reward gradient, not g * 0 = NaN."""
    device = device_for(backend)
    a, b = torch.rand(3, 4, device=device), torch.rand(3, 4, device=device)
    valid = torch.tensor([[False, True, False, False], [False] * 4, [True] * 4], device=device)
    grad_reward_a = torch.tensor([float("inf"), float("nan"), 1.0], device=device)
    grad_margin = torch.tensor([1.0, float("inf"), 2.0], device=device)
    grads = {}
    for bk in (backend, "reference"):
        a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
        out = ramo.select_rules(a_, b_, k=2, valid=valid, backend=bk)
        torch.autograd.backward((out.reward_a, out.margin), (grad_reward_a, grad_margin))
        grads[bk] = (out.indices, a_.grad, b_.grad)
    indices, grad_a, grad_b = grads[backend]
    assert indices[:2].tolist() == [[1, -1], [-1, -1]]
    assert grad_a[0, 1] == float("inf") and grad_b[0, 1] == -1.0
    for g in (grad_a, grad_b):
        assert not g[0, [0, 2, 3]].any() and not g[1].any()
    for got, want in zip(grads[backend], grads["reference"]):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_criterion_is_not_differentiable():
    a = torch.rand(3, 8, requires_grad=True)
    out = ramo.select_rules(a, torch.rand(3, 8), k=2, backend="cpu")
    assert out.reward_a.requires_grad and not out.criterion.requires_grad


def _op_for(backend):
    return torch.ops.ramo.select_rules_triton if backend == "triton" else torch.ops.ramo.select_rules


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_opcheck(backend):
    device = device_for(backend)
    cases = [
        make_case(7, 9, 30, torch.float32, relevance="shared", valid="per_row", device=device),
        make_case(8, 4, 11, torch.float64, relevance="per_row", device=device),
        make_case(9, 5, 16, torch.bfloat16, valid="shared", device=device),
    ]
    for a, b, rel, valid in cases:
        a = torch.nan_to_num(a, nan=0.0).requires_grad_(a.dtype != torch.bfloat16)
        b = b.clone().requires_grad_(a.requires_grad)
        torch.library.opcheck(_op_for(backend), (a, b, rel, valid, 3, 0.5, 1.0, 0.0))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_torch_compile_fullgraph(backend):
    device = device_for(backend)
    a, b, rel, _ = make_case(10, 16, 40, torch.float32, relevance="shared", device=device)
    a.requires_grad_()

    def loss_fn(a, b, rel):
        out = ramo.select_rules(a, b, rel, k=5, backend=backend)
        return torch.nn.functional.logsigmoid(out.margin).sum(), out.indices

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    loss, indices = compiled(a, b, rel)
    (grad,) = torch.autograd.grad(loss, a)
    want_loss, want_indices = loss_fn(a, b, rel)
    (want_grad,) = torch.autograd.grad(want_loss, a)
    assert torch.equal(indices, want_indices)
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(grad, want_grad)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_torch_compile_fullgraph_symbolic_weights(backend):
    """Float arguments become symbols under torch.compile: with dynamic=True, and by default
    once a second call passes another value (automatic dynamic). The call still traces as one
    graph, gives the eager bits, and a non-finite weight is still a ValueError (the op checks
    the values it is given)."""
    device = device_for(backend)
    a, b, rel, valid = make_case(12, 6, 20, torch.float32, relevance="shared",
                                 valid="per_row", device=device)

    def select(a, b, rel, valid, wd, wr, tol):
        out = ramo.select_rules(a, b, rel, k=3, valid=valid, discrepancy_weight=wd,
                                relevance_weight=wr, tie_tolerance=tol, backend=backend)
        return out.indices, out.criterion, out.margin, out.preference

    for dynamic in (True, None):
        torch._dynamo.reset()
        compiled = torch.compile(select, fullgraph=True, dynamic=dynamic)
        for weights in ((0.5, 1.0, 0.0), (0.25, 2.0, 0.125), (3, 1, 0.5)):
            got = compiled(a, b, rel, valid, *weights)
            want = select(a, b, rel, valid, *weights)
            for x, y in zip(got, want):
                torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
        for weights, name in (((float("inf"), 1.0, 0.0), "discrepancy_weight"),
                              ((0.5, float("nan"), 0.0), "relevance_weight"),
                              ((0.5, 1.0, float("nan")), "tie_tolerance")):
            with pytest.raises(ValueError, match=f"select_rules: {name} must be a finite"):
                compiled(a, b, rel, valid, *weights)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_torch_compile_fullgraph_rule_count_marked_dynamic(backend):
    """R of the scores traced as a symbol beside the relevance's R, a plain number: the
    shape check still finds them equal."""
    device = device_for(backend)
    a, b, rel, _ = make_case(13, 5, 20, torch.float32, relevance="shared", device=device)

    def margin(a, b, rel):
        return ramo.select_rules(a, b, rel, k=3, backend=backend).margin

    torch._dynamo.reset()
    for t in (a, b):
        torch._dynamo.maybe_mark_dynamic(t, 1)
    got = torch.compile(margin, fullgraph=True)(a, b, rel)
    torch.testing.assert_close(got, margin(a, b, rel), rtol=0, atol=0)


# --- bad input ----------------------------------------------------------------------------

def _bad_inputs():
    a, b = torch.rand(4, 6), torch.rand(4, 6)
    nan_a = a.clone()
    nan_a[2, 3] = float("nan")
    inf_b = b.clone()
    inf_b[1, 0] = float("-inf")
    bad_rel = torch.rand(6)
    bad_rel[5] = float("inf")
    bad_rel_rows = torch.rand(4, 6)
    bad_rel_rows[3, 1] = float("nan")
    return [
        ("non-finite", (nan_a, b), {}),
        ("non-finite", (a, inf_b), {}),
        ("non-finite", (a, b, bad_rel), {}),
        ("non-finite", (a, b, bad_rel_rows), {}),
        ("differ in shape", (a, b[:, :5]), {}),
        ("must be \\[N, R\\]", (a[0], b[0]), {}),
        ("k must be", (a, b), {"k": 0}),
        ("k must be", (a, b), {"k": 7}),
        ("k must be", (a, b), {"k": 2.0}),
        ("float tensor", (a.to(torch.int32), b.to(torch.int32)), {}),
        ("scores_b is", (a, b.double()), {}),
        ("relevance must have shape", (a, b, torch.rand(5)), {}),
        ("valid must be bool", (a, b), {"valid": torch.ones(6)}),
        ("valid must have shape", (a, b), {"valid": torch.ones(3, 6, dtype=torch.bool)}),
        ("is on meta", (a, b, torch.rand(6, device="meta")), {}),
        ("tie_tolerance", (a, b), {"tie_tolerance": -1.0}),
        ("discrepancy_weight", (a, b), {"discrepancy_weight": float("nan")}),
        # Ints beyond every float: no OverflowError from the check.
        ("discrepancy_weight must be a finite", (a, b), {"discrepancy_weight": 10 ** 400}),
        ("relevance_weight must be a finite", (a, b), {"relevance_weight": -10 ** 400}),
        ("tie_tolerance must be a finite", (a, b), {"tie_tolerance": 10 ** 400}),
    ]


@pytest.mark.parametrize("backend", [
    "reference", "cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_first_non_finite_row_is_named(backend):
    # Enough rows for the CPU backend to hand them out in many chunks (and for CUDA's thread
    # per row): the report must still name the first bad row, whichever finishes first.
    a, b = torch.rand(20000, 100), torch.rand(20000, 100)
    for row in (19999, 15000, 3001, 8000):
        a[row, 7] = float("nan")
    device = device_for(backend)
    with pytest.raises(ValueError, match=r"scores_a has a non-finite value .*row 3001, rule 7"):
        ramo.select_rules(a.to(device), b.to(device), k=5, backend=backend)


@pytest.mark.parametrize("backend", FAST_BACKENDS + [pytest.param("reference", id="reference")])
def test_shared_relevance_error_names_row_and_rule(backend):
    """A non-finite shared relevance is reported as the reference reports it: the first row
    whose mask lets the rule in; with no rows it is never used, so no error."""
    device = device_for(backend)
    a, b, rel = torch.rand(6, 10), torch.rand(6, 10), torch.rand(10)
    rel[4] = float("inf")
    valid = torch.ones(6, 10, dtype=torch.bool)
    valid[:3, 4] = False
    with pytest.raises(ValueError, match=r"relevance has a non-finite value in a valid "
                                         r"position \(row 3, rule 4\)"):
        ramo.select_rules(a.to(device), b.to(device), rel.to(device), valid=valid.to(device),
                          k=3, backend=backend)
    empty = torch.empty(0, 10, device=device)
    out = ramo.select_rules(empty, empty, rel.to(device), k=3, backend=backend)
    assert out.indices.shape == (0, 3)


def _several_bad_cases():
    """(id, n, r, edits, relevance, valid, message): non-finite values in several inputs. Every
    backend names the first row bad in any input (a shared relevance counts in every row,
    masked by that row's valid); in it the first of scores_a, scores_b, relevance; its first
    rule."""
    def msg(name, row, rule):
        return (f"select_rules: {name} has a non-finite value in a valid position "
                f"(row {row}, rule {rule}) as float32, the dtype the op computes in")

    nan, inf = float("nan"), float("inf")
    cases = []
    # A later-row scores_a and an earlier-row scores_b: the row decides.
    cases.append(("a_later_b_earlier", 8, 6, [("a", 5, 2, nan), ("b", 1, 3, inf)],
                  None, None, msg("scores_b", 1, 3)))
    # The same row in a and b: scores_a first, even at a later rule.
    cases.append(("same_row_a_first", 8, 6, [("a", 2, 4, nan), ("b", 2, 1, -inf)],
                  None, None, msg("scores_a", 2, 4)))
    # A shared relevance bad at rule 3 (so in every row) and scores_a bad at rows 0 and 4.
    rel = torch.rand(6, dtype=torch.float64)
    rel[3] = inf
    cases.append(("shared_rel_and_a_row0", 8, 6, [("a", 0, 5, nan), ("a", 4, 0, nan)],
                  rel, None, msg("scores_a", 0, 5)))
    # The same, with row 0's bad score masked: row 0's relevance comes first.
    valid = torch.ones(8, 6, dtype=torch.bool)
    valid[0, 5] = False
    cases.append(("shared_rel_a_masked", 8, 6, [("a", 0, 5, nan), ("a", 4, 0, nan)],
                  rel, valid, msg("relevance", 0, 3)))
    # The relevance masked out of rows 0 to 2: scores_a's row 1 comes first.
    valid = torch.ones(8, 6, dtype=torch.bool)
    valid[:3, 3] = False
    cases.append(("shared_rel_masked_early", 8, 6, [("a", 1, 2, inf), ("a", 6, 0, nan)],
                  rel, valid, msg("scores_a", 1, 2)))
    # A per-row mask hiding the earliest bad value (b at row 1).
    valid = torch.ones(8, 6, dtype=torch.bool)
    valid[1, 3] = False
    cases.append(("per_row_mask_hides_first", 8, 6, [("b", 1, 3, inf), ("a", 5, 2, nan)],
                  None, valid, msg("scores_a", 5, 2)))
    # A per-row relevance in an earlier row than the scores.
    rel_rows = torch.rand(8, 6, dtype=torch.float64)
    rel_rows[3, 0] = nan
    cases.append(("per_row_rel_earlier", 8, 6, [("a", 4, 1, nan), ("b", 3, 5, inf)],
                  rel_rows, None, msg("scores_b", 3, 5)))
    # Many rows (CPU chunks, CUDA's thread per row): a later a, an earlier row with b and a.
    cases.append(("many_rows", 5000, 40, [("a", 4500, 7, nan), ("b", 4000, 30, inf),
                                          ("a", 4000, 31, nan)],
                  None, None, msg("scores_a", 4000, 31)))
    return [pytest.param(*c[1:], id=c[0]) for c in cases]


@pytest.mark.parametrize("backend", FAST_BACKENDS + [pytest.param("reference", id="reference")])
@pytest.mark.parametrize("n,r,edits,relevance,valid,message", _several_bad_cases())
def test_several_non_finite_inputs_name_the_same_position(backend, n, r, edits, relevance,
                                                          valid, message):
    device = device_for(backend)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(n, r, generator=g), torch.rand(n, r, generator=g)
    for which, row, rule, value in edits:
        (a if which == "a" else b)[row, rule] = value
    rel = None if relevance is None else relevance.to(device)
    mask = None if valid is None else valid.to(device)
    with pytest.raises(ValueError) as caught:
        ramo.select_rules(a.to(device), b.to(device), rel, valid=mask, k=3, backend=backend)
    assert str(caught.value).splitlines()[0] == message


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("match,args,kwargs", _bad_inputs())
def test_bad_input_raises_value_error(backend, match, args, kwargs):
    kwargs = {"k": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        ramo.select_rules(*args, backend=backend, **kwargs)


@pytest.mark.parametrize("backend", FAST_BACKENDS + [pytest.param("reference", id="reference")])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_row"])
def test_relevance_is_checked_in_the_accumulation_dtype(backend, shared):
    """Every backend, the reference included, checks values as the op computes with them: a
    float64 relevance of 1e300 is finite, but inf in float32 beside float32 scores, and the
    message says so; beside float64 scores it is finite and selected."""
    device = device_for(backend)
    rel = torch.zeros(2, 3, dtype=torch.float64)
    rel[:, 1] = 1.0
    rel[1, 2] = 1e300
    rel = (rel[1] if shared else rel).to(device)
    a, b = torch.zeros(2, 3, device=device), torch.zeros(2, 3, device=device)
    with pytest.raises(ValueError) as caught:
        ramo.select_rules(a, b, rel, k=2, backend=backend)
    assert str(caught.value).splitlines()[0] == (
        f"select_rules: relevance has a non-finite value in a valid position (row "
        f"{0 if shared else 1}, rule 2) as float32, the dtype the op computes in")
    out = ramo.select_rules(a.double(), b.double(), rel, k=2, backend=backend)
    assert out.indices[1].tolist() == [2, 1]


def test_non_finite_error_names_row_and_rule():
    a = torch.rand(5, 9)
    a[3, 4] = float("inf")
    for backend in ("reference", "cpu", "triton"):
        with pytest.raises(ValueError, match=r"scores_a .*row 3, rule 4"):
            ramo.select_rules(a, torch.rand(5, 9), k=2, backend=backend)


def test_non_finite_in_invalid_positions_is_allowed():
    a = torch.rand(3, 5)
    a[:, 2] = float("nan")
    valid = torch.tensor([True, True, False, True, True])
    for backend in ("reference", "cpu", "triton"):
        out = ramo.select_rules(a, torch.rand(3, 5), k=4, valid=valid, backend=backend)
        assert (out.indices != 2).all()


@pytest.mark.parametrize("kwargs", [
    {"args": (torch.rand(3, 4), torch.rand(3, 5), None, None, 2, 0.5, 1.0, 0.0)},
    {"args": (torch.rand(3, 4), torch.rand(3, 4), None, None, 9, 0.5, 1.0, 0.0)},
    {"args": (torch.rand(3, 4), torch.rand(3, 4), torch.rand(2), None, 2, 0.5, 1.0, 0.0)},
    {"args": (torch.rand(3, 4).int(), torch.rand(3, 4).int(), None, None, 2, 0.5, 1.0, 0.0)},
    {"args": (torch.rand(3, 4), torch.rand(3, 4), None, torch.ones(4), 2, 0.5, 1.0, 0.0)},
])
def test_compiled_op_checks_its_own_input(kwargs):
    """torch.ops.ramo.select_rules called directly (bypassing the Python checks) still raises."""
    with pytest.raises(ValueError):
        torch.ops.ramo.select_rules(*kwargs["args"])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("weights,match", [
    ((float("inf"), 1.0, 0.0), "discrepancy_weight must be a finite Python int or float, got inf"),
    ((0.5, float("-inf"), 0.0), "relevance_weight must be a finite Python int or float, got -inf"),
    ((0.5, 1.0, float("nan")), "tie_tolerance must be a finite Python int or float, got nan"),
    ((0.5, 1.0, -0.5), "tie_tolerance must be >= 0"),
])
def test_raw_ops_check_their_weights(backend, weights, match):
    """The ops check the weights themselves (the Python function does not under
    torch.compile), with the Python function's messages."""
    device = device_for(backend)
    a = torch.rand(3, 4, device=device)
    with pytest.raises(ValueError, match=f"select_rules: {match}"):
        _op_for(backend)(a, a, None, None, 2, *weights)


# --- dispatch and fallbacks ---------------------------------------------------------------

def test_default_dispatch_on_cpu_is_cpu(monkeypatch):
    monkeypatch.delenv("RAMO_BACKEND", raising=False)
    assert backends.resolve("select_rules", torch.device("cpu"), None) == "cpu"


def test_ramo_backend_environment_variable(monkeypatch):
    monkeypatch.setenv("RAMO_BACKEND", "reference")
    assert backends.resolve("select_rules", torch.device("cpu"), None) == "reference"
    assert backends.resolve("select_rules", torch.device("cpu"), "cpu") == "cpu"


def test_wrong_device_or_unknown_backend_is_an_error():
    a = torch.rand(2, 3)
    with pytest.raises(ValueError, match="cannot run tensors on cpu"):
        ramo.select_rules(a, a, k=1, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        ramo.select_rules(a, a, k=1, backend="numpy")


def test_large_k_falls_back_to_reference_with_one_warning():
    backends._warned.clear()
    a, b = torch.rand(3, 100), torch.rand(3, 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ramo.select_rules(a, b, k=MAX_FAST_K + 1, backend="cpu")
        ramo.select_rules(a, b, k=MAX_FAST_K + 1, backend="cpu")
    messages = [str(w.message) for w in caught if "instead of cpu" in str(w.message)]
    assert len(messages) == 1 and "reference" in messages[0]
    assert_matches(out, ramo.select_rules(a, b, k=MAX_FAST_K + 1, backend="reference"))


def test_triton_on_cpu_without_interpreter_falls_back(monkeypatch):
    backends._warned.clear()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.warns(RuntimeWarning, match="TRITON_INTERPRET"):
        chosen = backends.resolve("select_rules", torch.device("cpu"), "triton")
    assert chosen == "cpu"


def test_compiled_limits_match_python():
    from ramo import _C
    from ramo.ops._common import _MAX_FAST_K_WITHOUT_EXTENSION

    assert _C.max_fast_k == MAX_FAST_K
    # The limit a source checkout without ramo._C assumes is the compiled one.
    assert _MAX_FAST_K_WITHOUT_EXTENSION == _C.max_fast_k


def test_triton_kernels_accumulate_like_the_reference():
    """kernels/triton restates the accumulation rule (it imports nothing from ramo)."""
    from ramo.ops._common import FLOAT_DTYPES
    from ramo.reference.select_rules import accumulation_dtype
    from ramo.triton_kernels import _dtypes

    for dtype in FLOAT_DTYPES:
        assert _dtypes.accumulation_dtype(dtype) == accumulation_dtype(dtype)
        assert dtype in _dtypes.TRITON_TYPES


def test_eager_baseline_agrees_with_reference():
    """The benchmark's baseline computes the same thing (no ties, no masks, fp32)."""
    a, b, rel, _ = make_case(11, 50, 100, torch.float32, relevance="shared")
    base = select_rules_eager(a, b, rel, 5)
    ref = ramo.select_rules(a, b, rel, k=5, backend="reference")
    assert torch.equal(base[0], ref.indices)
    torch.testing.assert_close(base[2], ref.reward_a)
    assert torch.equal(base[5], ref.preference)


def test_describe_lists_every_op_on_every_device(monkeypatch):
    from ramo.ops._common import OPS

    monkeypatch.delenv("RAMO_BACKEND", raising=False)
    lines = ramo.ops.describe_dispatch([torch.device("cpu")])
    assert lines[0] == "dispatch (backend=None):"
    assert [line.split()[0] for line in lines[1:]] == list(OPS)
    assert f"  select_rules on cpu tensors -> cpu (k <= {MAX_FAST_K}; larger k -> reference)" \
        in lines
    assert "  judge_scores on cpu tensors -> cpu" in lines
    monkeypatch.setenv("RAMO_BACKEND", "reference")
    lines = ramo.ops.describe_dispatch([torch.device("cpu")])
    assert lines[0] == "dispatch (backend=None, RAMO_BACKEND set):"
    assert "  judge_scores on cpu tensors -> reference" in lines


def test_ramo_info_runs():
    env = {**os.environ, "RAMO_BACKEND": ""}
    out = subprocess.run([sys.executable, "-m", "ramo", "info"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "select_rules on cpu tensors -> cpu" in out
    assert ramo.__version__ in out
