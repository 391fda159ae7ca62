"""rule_head_select on every backend against the reference (docs/architecture.md,
"rule_head_select").

The reference's forward is the specification and its gradient (plain autograd through addmm
and the reference select_rules) is the oracle of the fused backward.
"""

import os
import subprocess
import sys
import warnings

import pytest
import torch

import ramo
from ramo import backends
from ramo.ops._common import MAX_FAST_K
from ramo.ops.rule_head_select import RuleHeadSelection
from python_tests.baselines import rule_head_select_eager
from python_tests.test_select_rules import device_for, selection_extras

FAST_BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("triton", id="triton"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]
ALL_BACKENDS = FAST_BACKENDS + [pytest.param("reference", id="reference")]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
FLOAT_FIELDS = ("criterion", "reward_a", "reward_b", "margin")
PARAMS = ("hidden_a", "hidden_b", "weight", "bias")


def make_case(seed, n, d, r, dtype, *, ties=False, bias=True, relevance="none", valid="none",
              noncontiguous=False, device="cpu"):
    """(hidden_a, hidden_b, weight, bias, relevance, valid) for one test case.

    ties: small integers in hidden and halves in weight, so that every score is exact in
    every dtype and many criteria are equal (the tie rule decides)."""
    g = torch.Generator().manual_seed(seed)
    if ties:
        ha = torch.randint(-2, 3, (n, d), generator=g).double()
        hb = torch.randint(-2, 3, (n, d), generator=g).double()
        w = torch.randint(-1, 2, (r, d), generator=g).double() * 0.5
        b = torch.randint(-2, 3, (r,), generator=g).double() * 0.25
    else:
        ha = torch.randn(n, d, generator=g, dtype=torch.float64)
        hb = torch.randn(n, d, generator=g, dtype=torch.float64)
        w = torch.randn(r, d, generator=g, dtype=torch.float64) / d ** 0.5
        b = torch.randn(r, generator=g, dtype=torch.float64) * 0.1
    rel, mask = selection_extras(g, n, r, relevance=relevance, valid=valid, ties=ties)
    if noncontiguous:  # transposed storage: same values, strides (1, n)
        ha, hb = ha.t().contiguous().t(), hb.t().contiguous().t()
    ha, hb, w, b = (t.to(dtype) for t in (ha, hb, w, b))
    if rel is not None:
        rel = rel.to(torch.float64 if dtype == torch.float64 else torch.float32)
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return move(ha), move(hb), move(w), move(b) if bias else None, move(rel), move(mask)


def call(backend, case, **kwargs):
    ha, hb, w, b, rel, valid = case
    return ramo.rule_head_select(ha, hb, w, b, rel, valid=valid, backend=backend, **kwargs)


def assert_matches(out: RuleHeadSelection, ref: RuleHeadSelection) -> None:
    assert torch.equal(out.indices.cpu(), ref.indices.cpu())
    assert torch.equal(out.preference.cpu(), ref.preference.cpu())
    for name in ("scores_a", "scores_b"):  # one addmm call in every backend
        assert getattr(out, name).dtype == getattr(ref, name).dtype, name
    if out.scores_a.device == ref.scores_a.device:  # bit for bit (NaN where NaN)
        for name in ("scores_a", "scores_b"):
            torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=0,
                                       equal_nan=True, msg=name)
    for name in FLOAT_FIELDS:
        x, y = getattr(out, name).cpu(), getattr(ref, name).cpu()
        assert x.dtype == y.dtype, name
        torch.testing.assert_close(x, y, rtol=1e-6, atol=0, equal_nan=True, msg=name)


def run_both(backend, case, **kwargs):
    """The backend's output and the reference's, on the same device (the same addmm call
    there: the scores agree bit for bit)."""
    return call(backend, case, **kwargs), call("reference", case, **kwargs)


# --- forward: agreement with the reference ------------------------------------------------

SWEEP = [(1, 1, 1), (3, 5, 2), (17, 7, 31), (33, 64, 100), (9, 33, 257), (40, 13, 64)]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_matches_reference_sweep(backend, dtype):
    """Odd N, D, R; k from 1 to min(R, 64); ties; bias or not; relevance and valid variants."""
    device = device_for(backend)
    rng = torch.Generator().manual_seed(DTYPES.index(dtype))
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=rng))]  # noqa: E731
    for case_no, (n, d, r) in enumerate(SWEEP):
        for k in sorted({1, min(r, 5), min(r, MAX_FAST_K)}):
            case = make_case(case_no * 100 + k, n, d, r, dtype, ties=case_no % 2 == 0,
                             bias=k % 2 == 1, relevance=pick(["none", "shared", "per_row"]),
                             valid=pick(["none", "shared", "per_row"]),
                             noncontiguous=case_no % 3 == 1, device=device)
            out, ref = run_both(backend, case, k=k)
            assert_matches(out, ref)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("relevance", ["none", "shared", "per_row"])
@pytest.mark.parametrize("valid", ["none", "shared", "per_row"])
def test_forward_matches_reference_masks(backend, relevance, valid):
    device = device_for(backend)
    for seed, (n, d, r, k) in enumerate([(40, 24, 100, 5), (12, 16, 24, 24)]):
        case = make_case(seed, n, d, r, torch.float32, ties=seed == 1, relevance=relevance,
                         valid=valid, device=device)
        out, ref = run_both(backend, case, k=k, discrepancy_weight=0.75, relevance_weight=0.3,
                            tie_tolerance=0.25 * seed)
        assert_matches(out, ref)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_empty_batch(backend):
    device = device_for(backend)
    h = torch.zeros(0, 6, device=device, requires_grad=True)
    w = torch.rand(10, 6, device=device, requires_grad=True)
    out = ramo.rule_head_select(h, h, w, k=3, backend=backend)
    assert out.indices.shape == (0, 3) and out.scores_a.shape == (0, 10)
    assert out.preference.dtype == torch.int8
    grad_h, grad_w = torch.autograd.grad(out.margin.sum() + out.reward_a.sum(), (h, w))
    assert grad_h.shape == (0, 6) and torch.equal(grad_w, torch.zeros_like(w))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_extreme_values(backend, dtype):
    """Scores near the dtype's limit (an overflowing |a - b| gives an inf criterion) and a NaN
    weight row for a rule that is not valid (its scores are NaN, which is allowed there)."""
    device = device_for(backend)
    big = torch.finfo(dtype).max / 4
    ha = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)
    hb = -ha
    w = torch.tensor([[big, 0.0], [0.0, big], [1.0, -1.0], [float("nan"), 0.5], [2.0, 0.0]],
                     dtype=dtype)
    valid = torch.tensor([True, True, True, False, True])
    case = tuple(t.to(device) for t in (ha, hb, w)) + (None, None, valid.to(device))
    for wd in (0.5, 1e30 if dtype != torch.float16 else 1e4):
        out, ref = run_both(backend, case, k=3, discrepancy_weight=wd)
        assert_matches(out, ref)
        assert (out.indices != 3).all()


def test_relevance_fp32_beside_fp16_heads_is_not_rounded():
    h = torch.zeros(1, 4, dtype=torch.float16)
    w = torch.zeros(2, 4, dtype=torch.float16)
    rel = torch.tensor([1.0, 1.0 + 2**-20])
    for backend in ("cpu", "reference"):
        assert ramo.rule_head_select(h, h, w, None, rel, k=1, backend=backend).indices.item() == 1


def test_eager_baseline_agrees_with_reference():
    """The benchmark's baseline computes the same thing (no ties, no masks, fp32)."""
    ha, hb, w, b, rel, _ = make_case(11, 50, 32, 100, torch.float32, relevance="shared")
    base = rule_head_select_eager(ha, hb, w, b, rel, 5)
    ref = ramo.rule_head_select(ha, hb, w, b, rel, k=5, backend="reference")
    assert torch.equal(base[0], ref.indices)
    torch.testing.assert_close(base[2], ref.reward_a)
    assert torch.equal(base[5], ref.preference)
    assert torch.equal(base[6], ref.scores_a)


# --- gradients ----------------------------------------------------------------------------

def _loss(out, weights, use_scores, targets=None):
    loss = (weights[0] * out.reward_a + weights[1] * out.reward_b + weights[2] * out.margin
            - torch.nn.functional.logsigmoid(out.margin)).sum()
    if use_scores:  # e.g. a regression of the heads onto the judge's ratings
        loss = loss + ((out.scores_a.float() - targets[0]) ** 2).mean() \
            + 0.5 * ((out.scores_b.float() - targets[1]) ** 2).sum()
    return loss


def _grads(backend, case, k, weights, use_scores, targets, **kwargs):
    params = [t.detach().clone().requires_grad_() for t in case[:4] if t is not None]
    full = params + [None] * (4 - len(params))
    out = ramo.rule_head_select(*full, case[4], valid=case[5], k=k, backend=backend, **kwargs)
    return torch.autograd.grad(_loss(out, weights, use_scores, targets), params)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("use_scores", [False, True], ids=["rewards", "rewards+scores"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_backward_matches_reference_autograd_fp32(backend, use_scores, bias):
    device = device_for(backend)
    worst = 0.0
    # The last two: many row ranges and column tiles of CUDA's shared-memory backward, and a
    # pool too large for it (its direct kernel).
    for seed, (n, d, r, k, rel, valid) in enumerate([(20, 24, 50, 7, "per_row", "per_row"),
                                                     (33, 40, 100, 5, "shared", "none"),
                                                     (9, 7, 13, 13, "none", "shared"),
                                                     (300, 130, 100, 5, "shared", "none"),
                                                     (11, 70, 300, 9, "shared", "per_row")]):
        case = make_case(seed, n, d, r, torch.float32, bias=bias, relevance=rel, valid=valid,
                         device=device)
        g = torch.Generator().manual_seed(seed)
        weights = torch.randn(3, n, generator=g).to(device)
        targets = torch.randn(2, n, r, generator=g).to(device)
        got = _grads(backend, case, k, weights, use_scores, targets)
        want = _grads("reference", case, k, weights, use_scores, targets)
        for name, x, y in zip(PARAMS, got, want):
            assert x.dtype == y.dtype == torch.float32 and x.shape == y.shape, name
            # Sums over 300 rows, ordered differently, differ by ulps of the largest entry.
            scale = max(1.0, y.abs().max().item())
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * scale, msg=name)
            worst = max(worst, ((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item())
    print(f"largest gradient error relative to the gradient's max: {worst:.2e}")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_backward_vs_fp64_ground_truth(backend, dtype):
    """Low-precision gradients are no further from the fp64 truth than the reference's (plain
    autograd in that dtype), plus a small tolerance."""
    device = device_for(backend)
    case = make_case(3, 24, 32, 64, dtype, relevance="shared", valid="shared", device=device)
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(3, 24, generator=g).to(device)
    targets = torch.randn(2, 24, 64, generator=g).to(device)
    for use_scores in (False, True):
        got = _grads(backend, case, 5, weights, use_scores, targets)
        want = _grads("reference", case, 5, weights, use_scores, targets)
        # fp64 truth through the reference, given the low-precision run's selection (the
        # fp64 scores may rank near-ties differently).
        indices = ramo.rule_head_select(*case[:4], case[4], valid=case[5], k=5,
                                        backend="reference").indices
        truth = _truth_grads(case, indices, weights, use_scores, targets)
        for name, x, y, t in zip(PARAMS, got, want, truth):
            assert x.dtype == dtype, name
            err = (x.double() - t).abs().max().item()
            err_ref = (y.double() - t).abs().max().item()
            # fp16 / bf16: up to one ulp of the largest gradient beyond the reference's error
            # (the sparse and the dense parts are rounded apart before they are added).
            tol = 1e-12 if dtype == torch.float64 else torch.finfo(dtype).eps * t.abs().max().item()
            assert err <= err_ref + tol, (name, err, err_ref)


def _truth_grads(case, indices, weights, use_scores, targets):
    """fp64 gradients of _loss with the selection fixed to `indices`."""
    params = [t.detach().double().requires_grad_() for t in case[:4]]
    ha, hb, w, b = params
    sa, sb = torch.addmm(b, ha, w.t()), torch.addmm(b, hb, w.t())
    sel = indices >= 0
    idx = indices.clamp_min(0)
    ra = torch.where(sel, sa.gather(1, idx), 0.0).sum(1)
    rb = torch.where(sel, sb.gather(1, idx), 0.0).sum(1)
    out = RuleHeadSelection(indices, None, ra, rb, ra - rb, None, sa, sb)
    return torch.autograd.grad(_loss(out, weights.double(), use_scores, targets.double()), params)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_backward_through_scores_only(backend):
    """Only the scores are used: the dense terms alone (the sparse kernel is not needed)."""
    device = device_for(backend)
    case = make_case(4, 10, 12, 20, torch.float32, device=device)
    params = [t.clone().requires_grad_() for t in case[:4]]
    for bk in (backend, "reference"):
        out = ramo.rule_head_select(*params, k=3, backend=bk)
        grads = torch.autograd.grad((out.scores_a ** 2).sum() - out.scores_b.sum(), params)
        if bk == backend:
            got = grads
    for x, y in zip(got, grads):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_padding_contributes_nothing(backend):
    """Rows with no valid rule (all -1) get zero hidden gradients and add nothing to weight."""
    device = device_for(backend)
    ha, hb, w, b, _, _ = make_case(5, 4, 6, 8, torch.float32, device=device)
    valid = torch.ones(4, 8, dtype=torch.bool, device=device)
    valid[1] = False
    valid[2, 3:] = False  # 3 valid rules, k = 5: two padding slots
    params = [t.clone().requires_grad_() for t in (ha, hb, w, b)]
    out = ramo.rule_head_select(*params, valid=valid, k=5, backend=backend)
    assert (out.indices[1] == -1).all() and (out.indices[2, 3:] == -1).all()
    ga, gb, gw, gbias = torch.autograd.grad(out.margin.sum(), params)
    assert torch.equal(ga[1], torch.zeros(6, device=device))
    assert torch.equal(gb[1], torch.zeros(6, device=device))
    # margin = reward_a - reward_b: grad_bias cancels (+1 - 1) on every selected rule.
    assert torch.equal(gbias, torch.zeros(8, device=device))
    want_w = torch.zeros(8, 6, dtype=torch.float64, device=device)
    for n in range(4):
        for r in out.indices[n].tolist():
            if r >= 0:
                want_w[r] += (ha[n] - hb[n]).double()
    torch.testing.assert_close(gw.double(), want_w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_inf_or_nan_reward_gradient_of_a_row_that_selects_nothing(backend):
    """A row that selects nothing does not reach the rewards: its hidden gradients are 0, as
    in autograd of the reference, whatever its reward gradient (not g * 0 = NaN for an inf or
    NaN one), and it adds nothing to weight or bias."""
    device = device_for(backend)
    case = make_case(8, 4, 5, 6, torch.float32, device=device)
    valid = torch.ones(4, 6, dtype=torch.bool, device=device)
    valid[[1, 3]] = False
    grad_reward_a = torch.tensor([1.0, float("inf"), -0.5, float("nan")], device=device)
    grad_margin = torch.tensor([0.25, float("nan"), 2.0, float("-inf")], device=device)
    grads = {}
    for bk in (backend, "reference"):
        params = [t.clone().requires_grad_() for t in case[:4]]
        out = ramo.rule_head_select(*params, valid=valid, k=2, backend=bk)
        torch.autograd.backward((out.reward_a, out.margin), (grad_reward_a, grad_margin))
        grads[bk] = [t.grad for t in params]
    for name, got, want in zip(PARAMS, grads[backend], grads["reference"]):
        assert got.isfinite().all(), name
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    for grad_hidden in grads[backend][:2]:
        assert not grad_hidden[[1, 3]].any()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_gradcheck_fp64(backend):
    device = device_for(backend)
    ha, hb, w, b, rel, valid = make_case(5, 6, 5, 9, torch.float64, relevance="shared",
                                         valid="per_row", device=device)
    params = [t.clone().requires_grad_() for t in (ha, hb, w, b)]

    def outputs(ha, hb, w, b):
        out = ramo.rule_head_select(ha, hb, w, b, rel, k=4, valid=valid, backend=backend)
        return out.reward_a, out.reward_b, out.margin, out.scores_a, out.scores_b

    # The interpreter pays per launch: Triton gets gradcheck's fast mode (random projections).
    assert torch.autograd.gradcheck(outputs, params, eps=1e-6, atol=1e-7,
                                    fast_mode=backend == "triton")


def test_relevance_gets_no_gradient():
    ha, hb, w, b, rel, _ = make_case(6, 5, 4, 8, torch.float32, relevance="per_row")
    rel.requires_grad_()
    h = ha.clone().requires_grad_()
    for backend in ("cpu", "reference"):
        out = ramo.rule_head_select(h, hb, w, b, rel, k=3, backend=backend)
        assert out.reward_a.requires_grad and not out.criterion.requires_grad
        grad_rel, grad_h = torch.autograd.grad(out.margin.sum(), (rel, h), allow_unused=True)
        assert grad_rel is None and grad_h is not None


def test_cpu_backward_is_deterministic_across_thread_counts():
    """grad_weight and grad_bias are summed in blocks of rows fixed by the shapes, whatever the
    number of threads (3000 rows: three blocks)."""
    case = make_case(7, 3000, 40, 16, torch.float32, relevance="shared")
    g = torch.Generator().manual_seed(0)
    weights, targets = torch.randn(3, 3000, generator=g), None
    threads = torch.get_num_threads()
    try:
        runs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            runs.append(_grads("cpu", case, 5, weights, False, targets))
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(runs[0], other))


@pytest.mark.parametrize("piece", [1, 5, 64, None])
def test_triton_backward_pieces_of_rows(piece):
    """Triton's grad_weight with each rule's rows cut into pieces of `piece` rows (interpreted,
    the default is one piece per rule): a rule every row selects, a rule none selects and
    padding give the CPU backend's gradients up to rounding, and the same bits twice."""
    from ramo.triton_kernels.rule_head_select import rule_head_select_backward as triton_backward

    device = device_for("triton")
    g = torch.Generator().manual_seed(piece or 0)
    n, d, r, k = 200, 37, 11, 3
    hidden_a, hidden_b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    weight = torch.randn(r, d, generator=g)
    # Rule 0 in every row; rules 1 .. r - 2 for the rest; rule r - 1 in none; some padding.
    rest = torch.stack([torch.randperm(r - 2, generator=g)[:k - 1] + 1 for _ in range(n)])
    indices = torch.cat([torch.zeros(n, 1, dtype=torch.int64), rest], dim=1)
    indices[::5, -1] = -1
    ga, gb = torch.randn(n, generator=g), torch.randn(n, generator=g)
    want = torch.ops.ramo.rule_head_select_backward(ga, gb, indices, hidden_a, hidden_b, weight)
    args = [t.to(device) for t in (ga, gb, indices, hidden_a, hidden_b, weight)]
    got = triton_backward(*args, piece=piece)
    again = triton_backward(*args, piece=piece)
    for name, x, y, z in zip(("grad_hidden_a", "grad_hidden_b", "grad_weight", "grad_bias"),
                             got, want, again):
        scale = max(1.0, y.abs().max().item())
        torch.testing.assert_close(x.cpu(), y, rtol=1e-5, atol=1e-5 * scale, msg=name)
        assert torch.equal(x, z), name
    assert got[3][r - 1] == 0 and torch.all(got[2][r - 1] == 0)


def test_triton_backward_is_reproducible():
    """Triton's backward has no atomics: rows grouped by rule, summed in a fixed order, give
    the same bits on every run (3000 rows over 16 rules: many rows per rule), interpreted on
    a CPU-only machine, compiled where there is a GPU."""
    device = device_for("triton")
    case = make_case(8, 3000, 40, 16, torch.float32, relevance="shared", device=device)
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(3, 3000, generator=g).to(device)
    runs = [_grads("triton", case, 5, weights, False, None) for _ in range(3)]
    for other in runs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(runs[0], other))


# --- opcheck, torch.compile ---------------------------------------------------------------

def _ops_for(backend):
    if backend == "triton":
        return (torch.ops.ramo.rule_head_select_triton,
                torch.ops.ramo.rule_head_select_backward_triton)
    return torch.ops.ramo.rule_head_select, torch.ops.ramo.rule_head_select_backward


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_opcheck(backend):
    device = device_for(backend)
    forward, backward = _ops_for(backend)
    cases = [
        (make_case(7, 9, 8, 30, torch.float32, relevance="shared", valid="per_row",
                   device=device), 3),
        (make_case(8, 4, 5, 11, torch.float64, relevance="per_row", bias=False,
                   device=device), 4),
        (make_case(9, 5, 6, 16, torch.bfloat16, valid="shared", device=device), 2),
    ]
    for (ha, hb, w, b, rel, valid), k in cases:
        grad = ha.dtype != torch.bfloat16
        ha, hb, w = (t.clone().requires_grad_(grad) for t in (ha, hb, w))
        b = None if b is None else b.clone().requires_grad_(grad)
        torch.library.opcheck(forward, (ha, hb, w, b, rel, valid, k, 0.5, 1.0, 0.0))
        out = forward(ha, hb, w, b, rel, valid, k, 0.5, 1.0, 0.0)
        n = ha.shape[0]
        acc = out[1].dtype
        g = torch.Generator().manual_seed(k)
        args = (torch.randn(n, generator=g, dtype=acc).to(device),
                torch.randn(n, generator=g, dtype=acc).to(device), out[6],
                ha.detach(), hb.detach(), w.detach())
        torch.library.opcheck(backward, args)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_torch_compile_fullgraph(backend):
    device = device_for(backend)
    ha, hb, w, b, rel, _ = make_case(10, 16, 12, 40, torch.float32, relevance="shared",
                                     device=device)
    params = [t.clone().requires_grad_() for t in (ha, hb, w, b)]

    def loss_fn(ha, hb, w, b, rel):
        out = ramo.rule_head_select(ha, hb, w, b, rel, k=5, backend=backend)
        loss = -torch.nn.functional.logsigmoid(out.margin).sum() + 0.1 * (out.scores_a ** 2).mean()
        return loss, out.indices

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)
    loss, indices = compiled(*params, rel)
    grads = torch.autograd.grad(loss, params)
    want_loss, want_indices = loss_fn(*params, rel)
    want_grads = torch.autograd.grad(want_loss, params)
    assert torch.equal(indices, want_indices)
    torch.testing.assert_close(loss, want_loss)
    for x, y in zip(grads, want_grads):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_torch_compile_fullgraph_symbolic_weights(backend):
    """Float arguments become symbols under torch.compile (dynamic=True, or by default once a
    second call passes another value): the forward and backward still trace as one graph and
    give the eager results, and a non-finite weight is still a ValueError."""
    device = device_for(backend)
    ha, hb, w, b, rel, _ = make_case(11, 8, 12, 30, torch.float32, relevance="shared",
                                     device=device)
    params = [t.clone().requires_grad_() for t in (ha, hb, w, b)]

    def loss_fn(ha, hb, w, b, rel, wd, tol):
        out = ramo.rule_head_select(ha, hb, w, b, rel, k=4, discrepancy_weight=wd,
                                    tie_tolerance=tol, backend=backend)
        return -torch.nn.functional.logsigmoid(out.margin).sum(), out.indices, out.preference

    for dynamic in (True, None):
        torch._dynamo.reset()
        compiled = torch.compile(loss_fn, fullgraph=True, dynamic=dynamic)
        for wd, tol in ((0.5, 0.0), (2.0, 0.25)):
            loss, indices, preference = compiled(*params, rel, wd, tol)
            grads = torch.autograd.grad(loss, params)
            want_loss, want_indices, want_preference = loss_fn(*params, rel, wd, tol)
            want_grads = torch.autograd.grad(want_loss, params)
            assert torch.equal(indices, want_indices)
            assert torch.equal(preference, want_preference)
            torch.testing.assert_close(loss, want_loss)
            for x, y in zip(grads, want_grads):
                torch.testing.assert_close(x, y)
        with pytest.raises(ValueError, match="rule_head_select: discrepancy_weight must be a "
                                             "finite"):
            compiled(*params, rel, float("inf"), 0.0)


# --- bad input ----------------------------------------------------------------------------

def _bad_inputs():
    ha, hb, w, b = torch.rand(4, 3), torch.rand(4, 3), torch.rand(6, 3), torch.rand(6)
    nan_h = ha.clone()
    nan_h[2, 1] = float("nan")
    inf_w = w.clone()
    inf_w[5, 0] = float("inf")
    bad_rel = torch.rand(6)
    bad_rel[5] = float("inf")
    big_rel = torch.rand(6, dtype=torch.float64)
    big_rel[5] = 1e300
    return [
        (r"scores_a \(hidden_a @ weight.T \+ bias\) has a non-finite value .*row 2",
         (nan_h, hb, w, b), {}),
        (r"non-finite value .*rule 5", (ha, hb, inf_w, b), {}),
        ("relevance has a non-finite", (ha, hb, w, b, bad_rel), {}),
        ("differ in shape", (ha, hb[:, :2], w, b), {}),
        ("must be \\[N, D\\]", (ha[0], hb[0], w, b), {}),
        ("weight must be \\[R, D\\]", (ha, hb, w[0], b), {}),
        ("has D=3 but weight has D=2", (ha, hb, w[:, :2], b), {}),
        ("bias must have shape", (ha, hb, w, b[:5]), {}),
        ("k must be", (ha, hb, w, b), {"k": 0}),
        ("k must be", (ha, hb, w, b), {"k": 7}),
        ("k must be", (ha, hb, w, b), {"k": 2.0}),
        ("float tensor", (ha.int(), hb.int(), w, b), {}),
        ("but weight is torch.float64", (ha, hb, w.double(), b), {}),
        ("but bias is torch.float16", (ha, hb, w, b.half()), {}),
        ("relevance must have shape", (ha, hb, w, b, torch.rand(5)), {}),
        ("valid must be bool", (ha, hb, w, b), {"valid": torch.ones(6)}),
        ("valid must have shape", (ha, hb, w, b), {"valid": torch.ones(3, 6, dtype=torch.bool)}),
        ("is on meta", (ha, hb, w.to("meta"), b), {}),
        ("tie_tolerance", (ha, hb, w, b), {"tie_tolerance": -1.0}),
        ("discrepancy_weight", (ha, hb, w, b), {"discrepancy_weight": float("inf")}),
        # Ints beyond every float: no OverflowError from the check.
        ("discrepancy_weight must be a finite", (ha, hb, w, b), {"discrepancy_weight": 10 ** 400}),
        ("tie_tolerance must be a finite", (ha, hb, w, b), {"tie_tolerance": 10 ** 400}),
        # Finite in float64, inf in float32: checked as the op computes with it.
        (r"relevance has a non-finite value in a valid position \(row 0, rule 5\) as float32, "
         r"the dtype the op computes in", (ha, hb, w, b, big_rel), {}),
    ]


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("match,args,kwargs", _bad_inputs())
def test_bad_input_raises_value_error(backend, match, args, kwargs):
    kwargs = {"k": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        ramo.rule_head_select(*args, backend=backend, **kwargs)


def test_fp16_overflow_is_named():
    """Scores that overflow fp16 in a valid position: the error names the computed scores."""
    h = torch.full((2, 2), 300.0, dtype=torch.float16)
    w = torch.full((3, 2), 300.0, dtype=torch.float16)
    for backend in ("reference", "cpu", "triton"):
        with pytest.raises(ValueError, match=r"rule_head_select: scores_a \(hidden_a @ weight"
                                             r".T \+ bias\) has a non-finite value .*row 0, "
                                             r"rule 0"):
            ramo.rule_head_select(h, h, w, k=1, backend=backend)


@pytest.mark.parametrize("args", [
    (torch.rand(3, 4), torch.rand(3, 5), torch.rand(2, 4), None, None, None, 1, 0.5, 1.0, 0.0),
    (torch.rand(3, 4), torch.rand(3, 4), torch.rand(2, 5), None, None, None, 1, 0.5, 1.0, 0.0),
    (torch.rand(3, 4), torch.rand(3, 4), torch.rand(2, 4), torch.rand(3), None, None, 1, 0.5,
     1.0, 0.0),
    (torch.rand(3, 4), torch.rand(3, 4), torch.rand(2, 4).double(), None, None, None, 1, 0.5,
     1.0, 0.0),
    (torch.rand(3, 4), torch.rand(3, 4), torch.rand(2, 4), None, None, None, 3, 0.5, 1.0, 0.0),
    (torch.rand(3, 4).int(), torch.rand(3, 4).int(), torch.rand(2, 4).int(), None, None, None,
     1, 0.5, 1.0, 0.0),
])
def test_compiled_op_checks_its_own_input(args):
    """torch.ops.ramo.rule_head_select called directly (no Python checks) still raises."""
    with pytest.raises(ValueError, match="rule_head_select"):
        torch.ops.ramo.rule_head_select(*args)


def test_compiled_backward_checks_its_own_input():
    h, w, g = torch.rand(3, 4), torch.rand(5, 4), torch.rand(3)
    good = torch.tensor([[0, 4], [1, -1], [-1, -1]])
    torch.ops.ramo.rule_head_select_backward(g, g, good, h, h, w)
    for idx in (torch.tensor([[0, 5], [1, -1], [-1, -1]]), torch.tensor([[0, -2], [1, 2], [3, 4]]),
                good.int(), good[:2]):
        with pytest.raises(ValueError, match="rule_head_select_backward: indices"):
            torch.ops.ramo.rule_head_select_backward(g, g, idx, h, h, w)
    with pytest.raises(ValueError, match="reward gradients"):
        torch.ops.ramo.rule_head_select_backward(g[:2], g, good, h, h, w)


def test_no_double_backward():
    ha, hb, w, b, _, _ = make_case(1, 4, 3, 5, torch.float64)
    h = ha.clone().requires_grad_()
    out = ramo.rule_head_select(h, hb, w, b, k=2, backend="cpu")
    (g,) = torch.autograd.grad(out.margin.sum(), h, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(g.sum(), h)


# --- dispatch and fallbacks ---------------------------------------------------------------

def test_large_k_falls_back_to_reference_with_one_warning():
    backends._warned.clear()
    case = make_case(12, 3, 4, 100, torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call("cpu", case, k=MAX_FAST_K + 1)
        call("cpu", case, k=MAX_FAST_K + 1)
    messages = [str(w.message) for w in caught if "instead of cpu" in str(w.message)]
    assert len(messages) == 1 and "reference" in messages[0]
    assert_matches(out, call("reference", case, k=MAX_FAST_K + 1))


def test_wrong_device_or_unknown_backend_is_an_error():
    case = make_case(13, 2, 3, 4, torch.float32)
    with pytest.raises(ValueError, match="cannot run tensors on cpu"):
        call("cuda", case, k=1)
    with pytest.raises(ValueError, match="unknown backend"):
        call("numpy", case, k=1)


def test_ramo_info_lists_the_op():
    env = {**os.environ, "RAMO_BACKEND": ""}
    out = subprocess.run([sys.executable, "-m", "ramo", "info"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "rule_head_select on cpu tensors -> cpu" in out
