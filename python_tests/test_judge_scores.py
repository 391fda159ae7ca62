"""judge_scores on every backend against an fp64 ground truth (docs/architecture.md,
"judge_scores").

The truth is torch.softmax in fp64 of the fp64 logits of the same inputs. Sizes stay small:
the Triton backend runs in its interpreter here.
"""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ramo import backends
from ramo.ops import JudgeScores, judge_scores
from python_tests.baselines import judge_scores_eager

FAST_BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("triton", id="triton"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]
ALL_BACKENDS = FAST_BACKENDS + [pytest.param("reference", id="reference")]
NARROW = [torch.float16, torch.bfloat16]
FIELDS = JudgeScores._fields
YES, NO, OTHER = [3, 1], [0], [7, 12, 40]


def device_for(backend: str) -> torch.device:
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def make_case(seed, b, d, v, dtype=torch.float32, *, bias=False, scale=1.0, device="cpu"):
    """hidden [B, D], weight [V, D], bias [V] or None: logits of a few units."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, d, generator=g, dtype=torch.float64) * scale
    weight = torch.randn(v, d, generator=g, dtype=torch.float64) / d ** 0.5
    bias_t = torch.randn(v, generator=g, dtype=torch.float64) if bias else None
    move = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    return move(hidden), move(weight), move(bias_t)


def truth(hidden, weight, bias, yes, no, other, normalize="vocab"):
    """The five outputs from torch.softmax in fp64, on the host."""
    logits = hidden.cpu().double() @ weight.cpu().double().T
    if bias is not None:
        logits = logits + bias.cpu().double()
    ids = list(yes) + list(no) + list(other)
    if normalize == "vocab":
        probs = torch.softmax(logits, dim=1)[:, ids]
    else:
        probs = torch.softmax(logits[:, ids], dim=1)
    p_yes = probs[:, :len(yes)].sum(1)
    p_no = probs[:, len(yes):len(yes) + len(no)].sum(1)
    p_other = probs[:, len(yes) + len(no):].sum(1)
    total = p_yes + p_no + p_other
    relevance = torch.where(total > 0, (p_yes + p_no) / total, torch.zeros_like(total))
    return JudgeScores(p_yes, p_no, p_other, p_yes - p_no, relevance)


def max_error(out: JudgeScores, want: JudgeScores) -> float:
    return max((getattr(out, f).cpu().double() - getattr(want, f)).abs().max().item()
               if getattr(want, f).numel() else 0.0 for f in FIELDS)


def run(backend, hidden, weight, bias, yes=YES, no=NO, other=OTHER, normalize="vocab"):
    return judge_scores(hidden, weight, yes, no, other, bias=bias, normalize=normalize,
                        backend=backend)


# --- agreement with the fp64 truth --------------------------------------------------------

# (B, D, V): odd sizes; V below one chunk, V not a multiple of the chunk (the CPU's chunks are
# 256 columns up to V = 8192; CUDA's and Triton's segments 1024), B past one block.
SHAPES = [(5, 33, 50), (1, 16, 1000), (33, 70, 4099)]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_within_1e5_of_fp64_truth(backend, normalize, shape):
    device = device_for(backend)
    for seed, (with_bias, other) in enumerate([(False, OTHER), (True, OTHER), (True, [])]):
        hidden, weight, bias = make_case(seed, *shape, bias=with_bias, scale=2.0, device=device)
        out = run(backend, hidden, weight, bias, other=other, normalize=normalize)
        assert all(getattr(out, f).dtype == torch.float32 for f in FIELDS)
        assert all(getattr(out, f).shape == (shape[0],) for f in FIELDS)
        err = max_error(out, truth(hidden, weight, bias, YES, NO, other, normalize))
        assert err <= 1e-5, (seed, err)


@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_from_listed_logprobs_equals_the_truth(normalize):
    """An engine that returns the listed ids' full-vocabulary log-probabilities (vLLM) gets
    the same five outputs, in fp64 to fp64 precision and from fp32 log-probabilities within
    the fp32 bound, extreme logits and an empty `other` set included."""
    from ramo.reference.judge_scores import from_listed_logprobs

    for seed, (scale, other) in enumerate([(2.0, OTHER), (40.0, OTHER), (2.0, [])]):
        hidden, weight, bias = make_case(seed, 9, 33, 300, dtype=torch.float64, bias=True,
                                         scale=scale)
        ids = YES + NO + list(other)
        logprobs = torch.log_softmax(hidden @ weight.T + bias, dim=1)[:, ids]
        want = truth(hidden, weight, bias, YES, NO, other, normalize)
        got = JudgeScores(*from_listed_logprobs(logprobs, len(YES), len(NO), normalize))
        assert max_error(got, want) <= 1e-12
        rounded = from_listed_logprobs(logprobs.float().double(), len(YES), len(NO), normalize)
        assert max_error(JudgeScores(*rounded), want) <= 1e-5


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", NARROW, ids=str)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_narrow_dtypes_no_worse_than_reference(backend, dtype, normalize):
    device = device_for(backend)
    hidden, weight, bias = make_case(3, 9, 48, 777, dtype, bias=True, scale=2.0, device=device)
    want = truth(hidden, weight, bias, YES, NO, OTHER, normalize)
    out = run(backend, hidden, weight, bias, normalize=normalize)
    ref = run("reference", hidden.cpu(), weight.cpu(), bias.cpu(), normalize=normalize)
    assert out.p_yes.dtype == torch.float32
    assert max_error(out, want) <= max_error(ref, want) + 5e-6


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_fp64(backend, normalize):
    device = device_for(backend)
    hidden, weight, bias = make_case(4, 6, 21, 300, torch.float64, bias=True, device=device)
    out = run(backend, hidden, weight, bias, normalize=normalize)
    assert out.score.dtype == torch.float64
    assert max_error(out, truth(hidden, weight, bias, YES, NO, OTHER, normalize)) <= 1e-12


@pytest.mark.parametrize("backend", [
    pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def test_many_full_chunks(backend):
    """V past 32 chunks of 4096 columns, not a multiple of it (the CPU's largest chunk size);
    on CUDA 15 chunks of 9 segments and a partial last one, a whole segment masked."""
    hidden, weight, bias = make_case(5, 3, 8, 140_001, bias=True, scale=3.0,
                                     device=device_for(backend))
    bias[1024:2048] = float("-inf")
    for normalize in ("vocab", "choices"):
        out = run(backend, hidden, weight, bias, other=[140_000, 77_777], normalize=normalize)
        want = truth(hidden, weight, bias, YES, NO, [140_000, 77_777], normalize)
        assert max_error(out, want) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_triton_many_chunks_and_segments(dtype, normalize):
    """Triton's vocabulary pass cut into many chunks of several segments, with a partial last
    one and whole segments of masked tokens (its default cut keeps V = 333 in one segment)."""
    from ramo.triton_kernels.judge_scores import judge_scores as triton_judge_scores

    device = device_for("triton")
    hidden, weight, bias = make_case(22, 37, 45, 333, dtype, bias=True, scale=2.0,
                                     device=device)
    bias = bias.float()
    bias[64:130] = float("-inf")  # whole segments of masked tokens
    ids = torch.tensor(YES + NO + OTHER, device=device)
    want = truth(hidden, weight, bias, YES, NO, OTHER, normalize)
    for chunk, segment in [(16, 16), (64, 16), (32, 32), (128, 64), (4096, 1024)]:
        out = JudgeScores(*triton_judge_scores(hidden, weight, bias, ids, len(YES), len(NO),
                                               normalize, chunk=chunk, segment=segment))
        assert max_error(out, want) <= 1e-5, (chunk, segment)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(0, 9), d=st.integers(1, 40), v=st.integers(4, 700),
       with_bias=st.booleans(), normalize=st.sampled_from(["vocab", "choices"]),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_cpu_matches_truth_hypothesis(b, d, v, with_bias, normalize, dtype, seed):
    hidden, weight, bias = make_case(seed, b, d, v, dtype, bias=with_bias, scale=2.0)
    ids = torch.randperm(v, generator=torch.Generator().manual_seed(seed))[:4].tolist()
    yes, no, other = ids[:1], ids[1:2], ids[2:]
    out = run("cpu", hidden, weight, bias, yes, no, other, normalize)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert max_error(out, truth(hidden, weight, bias, yes, no, other, normalize)) <= tol


# --- extreme values -----------------------------------------------------------------------

def exact_extreme_case(dtype, device):
    """Logits near 8192, -8192 and 16384 (a naive exp overflows, or underflows to 0 / 0, in
    every float dtype), exactly representable: powers of two plus small integers, so every
    dtype computes them without rounding."""
    hidden = torch.tensor([[2.0**13, 1.0], [-(2.0**13), 2.0], [2.0**14, 0.5]])
    weight = torch.ones(20, 2)
    weight[:, 1] = torch.tensor([2, 1, 4, 4, 0, 3, 3, -2, 1, 1, 0, 2, 1, -4, 2, 0, 3, 1, 0, 2.0])
    return hidden.to(device=device, dtype=dtype), weight.to(device=device, dtype=dtype)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_extreme_logits(backend, dtype, normalize):
    device = device_for(backend)
    hidden, weight = exact_extreme_case(dtype, device)
    yes, no, other = [2], [6, 13], [9, 17]
    out = run(backend, hidden, weight, None, yes, no, other, normalize)
    want = truth(hidden, weight, None, yes, no, other, normalize)
    assert all(torch.isfinite(getattr(out, f)).all() for f in FIELDS)
    assert max_error(out, want) <= 1e-6


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_relevance_where_probabilities_underflow(backend):
    """The listed ids sit ~150 below the best token: their fp32 vocabulary probabilities are 0,
    yet relevance is the exact ratio (the normaliser cancels in it), as in fp64."""
    device = device_for(backend)
    hidden = torch.tensor([[1.0, 0.0]], device=device)
    weight = torch.tensor([[150.0, 0.0], [0.0, 0.0], [0.0, 0.0], [-2.0, 0.0], [0.5, 0.0]],
                          device=device)
    out = run(backend, hidden, weight, None, [1], [2], [3, 4])
    assert out.p_yes.item() == 0.0 and out.p_no.item() == 0.0 and out.p_other.item() == 0.0
    e = torch.tensor([0.0, 0.0, -2.0, 0.5], dtype=torch.float64).exp()
    want = (e[0] + e[1]) / e.sum()
    assert abs(out.relevance.item() - want.item()) <= 1e-6
    full = truth(hidden, weight, None, [1], [2], [3, 4])  # fp64 still represents e^-150
    assert abs(out.relevance.item() - full.relevance.item()) <= 1e-6


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_masked_ids_and_relevance_zero(backend):
    """-inf bias masks tokens: probability 0. With every listed id masked (vocab mode) all
    three probabilities are 0, and so is relevance."""
    device = device_for(backend)
    hidden, weight, bias = make_case(8, 4, 10, 64, device=device, bias=True)
    bias[[3, 40]] = float("-inf")
    out = run(backend, hidden, weight, bias)
    want = truth(hidden, weight, bias, YES, NO, OTHER)
    assert max_error(out, want) <= 1e-5 and (out.p_yes > 0).all()
    bias[YES + NO + OTHER] = float("-inf")
    out = run(backend, hidden, weight, bias)
    for f in FIELDS:
        assert (getattr(out, f) == 0).all(), f


# --- shapes, layouts, id forms ------------------------------------------------------------

@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_empty_batch(backend, dtype):
    device = device_for(backend)
    hidden, weight, _ = make_case(0, 0, 8, 50, dtype, device=device)
    out = run(backend, hidden, weight, None)
    want = torch.float64 if dtype == torch.float64 else torch.float32
    assert all(getattr(out, f).shape == (0,) and getattr(out, f).dtype == want for f in FIELDS)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_zero_width_hidden(backend, normalize):
    """D = 0: every logit is its bias, so the probabilities are softmax(bias)."""
    device = device_for(backend)
    hidden, weight = torch.empty(3, 0, device=device), torch.empty(50, 0, device=device)
    bias = torch.randn(50, generator=torch.Generator().manual_seed(23)).to(device)
    out = run(backend, hidden, weight, bias, normalize=normalize)
    assert max_error(out, truth(hidden, weight, bias, YES, NO, OTHER, normalize)) <= 1e-6


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_noncontiguous_inputs(backend):
    device = device_for(backend)
    hidden, weight, bias = make_case(9, 6, 20, 90, bias=True, device=device)
    hidden_t = hidden.t().contiguous().t()  # same values, strides (1, B)
    weight_s = torch.stack([weight, weight], dim=2)[:, :, 0]  # strides (2D, 2)
    assert not hidden_t.is_contiguous() and not weight_s.is_contiguous()
    out = run(backend, hidden_t, weight_s, bias[::1])
    assert max_error(out, truth(hidden, weight, bias, YES, NO, OTHER)) <= 1e-5


def test_id_forms_agree():
    hidden, weight, bias = make_case(10, 4, 8, 60, bias=True)
    as_lists = judge_scores(hidden, weight, [5], [6, 7], [], bias=bias, backend="cpu")
    as_ints = judge_scores(hidden, weight, 5, torch.tensor([6, 7]), torch.tensor([], dtype=torch.long),
                           bias=bias, backend="cpu")
    as_tuples = judge_scores(hidden, weight, (5,), (6, 7), bias=bias, backend="cpu")
    for other in (as_ints, as_tuples):
        for f in FIELDS:
            assert torch.equal(getattr(other, f), getattr(as_lists, f))
    assert (as_lists.p_other == 0).all() and torch.allclose(as_lists.relevance, torch.ones(4))


def test_choices_reads_only_the_listed_rows():
    """NaN in every unlisted row of weight does not reach the "choices" outputs."""
    hidden, weight, _ = make_case(11, 3, 8, 40)
    poisoned = torch.full_like(weight, float("nan"))
    ids = YES + NO + OTHER[:2]
    poisoned[ids] = weight[ids]
    for backend in ("cpu", "triton"):
        out = run(backend, hidden, poisoned, None, other=OTHER[:2], normalize="choices")
        want = truth(hidden, weight, None, YES, NO, OTHER[:2], "choices")
        assert max_error(out, want) <= 1e-5, backend


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("bad", ["inf", "nan"])
def test_non_finite_weight_reaches_vocab_outputs_as_in_softmax(backend, bad):
    """weight is not checked (that would read the whole vocabulary once more): an inf or NaN
    in an unlisted row gives the "vocab" outputs torch.softmax would, NaN where a logit is
    NaN or +inf and a masked token where it is -inf, whichever chunk or segment holds it; the
    relevance reads the listed rows only."""
    device = device_for(backend)
    hidden, weight, _ = make_case(12, 4, 8, 3000)
    hidden[:, 3] = torch.tensor([1.0, -1.0, 2.0, -0.5])
    weight[2500, 3] = float(bad)  # inf: +inf logits in rows 0 and 2, -inf in rows 1 and 3
    out = run(backend, hidden.to(device), weight.to(device), None)
    softmax = truth(hidden, weight, None, YES, NO, OTHER)
    assert softmax.p_yes.isnan().any() and (bad == "nan" or not softmax.p_yes.isnan().all())
    for f in FIELDS[:4]:
        torch.testing.assert_close(getattr(out, f).cpu().double(), getattr(softmax, f),
                                   atol=1e-5, rtol=0, equal_nan=True, msg=f)
    listed = truth(hidden, weight, None, YES, NO, OTHER, "choices")
    torch.testing.assert_close(out.relevance.cpu().double(), listed.relevance, atol=1e-5, rtol=0)


# The Triton interpreter's numpy warns on the max of a segment of NaN.
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("layout", ["nan_rows", "nan_in_masked_rows"])
def test_nan_logits_in_a_chunk_of_their_own_reach_vocab_outputs(backend, layout):
    """A NaN logit makes the row's "vocab" outputs NaN, as in torch.softmax, also when every
    other logit of its CPU chunk (256 columns here) and CUDA / Triton segment (1024) is NaN
    or masked (-inf): that chunk's max is -inf, and it must not be skipped as masked."""
    device = device_for(backend)
    hidden, weight, _ = make_case(23, 3, 6, 3000)
    bias = None
    if layout == "nan_rows":
        weight[1024:2048, 0] = float("nan")
    else:
        bias = torch.zeros(3000)
        bias[1024:2048] = float("-inf")
        weight[1500, 0] = float("nan")
    out = run(backend, hidden.to(device), weight.to(device),
              None if bias is None else bias.to(device))
    for f in FIELDS[:4]:
        assert getattr(out, f).isnan().all(), f
    listed = truth(hidden, weight, bias, YES, NO, OTHER, "choices")
    torch.testing.assert_close(out.relevance.cpu().double(), listed.relevance, atol=1e-5, rtol=0)


# The Triton interpreter's numpy warns on the intended 0 / 0.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("normalize", ["vocab", "choices"])
def test_every_logit_overflowing_to_minus_inf_is_nan(backend, normalize):
    """Finite inputs whose every logit overflows to -inf in float32 (the host refuses only a
    bias that masks every token): torch.softmax's 0 / 0, NaN, in every backend as in the
    reference; the relevance of such a row is 0, every listed id having probability 0."""
    device = device_for(backend)
    hidden = torch.tensor([[-1e20], [1.0]], device=device)
    weight = torch.full((5, 1), 1e20, device=device)
    out = judge_scores(hidden, weight, [0], [1], [2, 4], normalize=normalize, backend=backend)
    want = judge_scores(hidden.cpu(), weight.cpu(), [0], [1], [2, 4], normalize=normalize,
                        backend="reference")
    assert want.p_yes[0].isnan() and want.relevance[0] == 0
    for f in FIELDS:
        torch.testing.assert_close(getattr(out, f).cpu(), getattr(want, f), equal_nan=True,
                                   msg=f)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_bias_is_checked_in_the_accumulation_dtype(backend):
    """A float64 bias beside float32 hidden states is checked as the op adds it, in float32,
    by every backend and the reference: 1e300 is +inf there, and -1e300 everywhere masks
    every token; -1e300 on one token masks it."""
    device = device_for(backend)
    hidden, weight, _ = make_case(24, 2, 4, 50, device=device)
    bias = torch.zeros(50, dtype=torch.float64, device=device)
    bias[5] = 1e300
    with pytest.raises(ValueError, match=r"bias holds NaN or \+inf \(token 5, as float32, the "
                                         r"dtype the op computes in\)"):
        run(backend, hidden, weight, bias)
    with pytest.raises(ValueError, match=r"bias masks \(-inf\) every token \(as float32, the "
                                         r"dtype the op computes in\)"):
        run(backend, hidden, weight, torch.full_like(bias, -1e300))
    bias[5] = -1e300
    want = truth(hidden, weight, bias.float(), YES, NO, OTHER)
    assert max_error(run(backend, hidden, weight, bias), want) <= 1e-5


# --- bad input ----------------------------------------------------------------------------

def _bad_inputs():
    h, w, b = make_case(12, 3, 5, 30, bias=True)
    nan_h = h.clone()
    nan_h[1, 2] = float("nan")
    inf_h = h.clone()
    inf_h[2, 0] = float("inf")
    nan_b = b.clone()
    nan_b[4] = float("nan")
    pinf_b = b.clone()
    pinf_b[6] = float("inf")
    all_masked = torch.full_like(b, float("-inf"))
    listed_masked = b.clone()
    listed_masked[[1, 2, 3]] = float("-inf")
    ok = ([1], [2], [3])
    return [
        ("hidden has a non-finite value \\(row 1, column 2\\)", (nan_h, w, *ok), {}),
        ("hidden has a non-finite value \\(row 2, column 0\\)", (inf_h, w, *ok), {}),
        ("bias holds NaN or \\+inf", (h, w, *ok), {"bias": nan_b}),
        ("bias holds NaN or \\+inf", (h, w, *ok), {"bias": pinf_b}),
        ("masks \\(-inf\\) every token", (h, w, *ok), {"bias": all_masked}),
        ("masks \\(-inf\\) every listed id", (h, w, *ok),
         {"bias": listed_masked, "normalize": "choices"}),
        ("hidden must be 2-D", (h[0], w, *ok), {}),
        ("weight must be 2-D", (h, w[0], *ok), {}),
        ("hidden must be float16", (h.int(), w.int(), *ok), {}),
        ("hidden is torch.float32 but weight is torch.float64", (h, w.double(), *ok), {}),
        ("hidden has D=5 but weight has D=4", (h, w[:, :4], *ok), {}),
        ("weight is on meta", (h, w.to("meta"), *ok), {}),
        ("bias must have shape \\[V=30\\]", (h, w, *ok), {"bias": b[:29]}),
        ("bias must be None or a float tensor", (h, w, *ok), {"bias": b.long()}),
        ("yes_ids holds 30, outside \\[0, V=30\\)", (h, w, [30], [2]), {}),
        ("other_ids holds -1", (h, w, [1], [2], [-1]), {}),
        ("yes_ids must not be empty", (h, w, [], [2]), {}),
        ("no_ids must not be empty", (h, w, [1], torch.tensor([], dtype=torch.long)), {}),
        ("token id 2 is in no_ids and in yes_ids", (h, w, [2], [2]), {}),
        ("token id 4 is in other_ids and in no_ids", (h, w, [1], [4], [5, 4]), {}),
        ("token id 1 is in yes_ids twice", (h, w, [1, 1], [2]), {}),
        ("yes_ids must hold integers", (h, w, torch.tensor([1.0]), [2]), {}),
        ("yes_ids must be 1-D", (h, w, torch.tensor([[1]]), [2]), {}),
        ("no_ids must hold ints", (h, w, [1], [2.0]), {}),
        ("yes_ids must be token ids, got a bool", (h, w, True, [2]), {}),
        ("normalize must be one of", (h, w, *ok), {"normalize": "softmax"}),
    ]


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("match,args,kwargs", _bad_inputs())
def test_bad_input_raises_value_error(backend, match, args, kwargs):
    with pytest.raises(ValueError, match=match):
        judge_scores(*args, backend=backend, **kwargs)


@pytest.mark.parametrize("args", [
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1, 9]), 1, 1, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1, -3]), 1, 1, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1, 2]), 1, 2, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1, 1]), 1, 1, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1.0, 2.0]), 1, 1, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 3), None, torch.tensor([1, 2]), 1, 1, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 4), torch.rand(8), torch.tensor([1, 2]), 1, 1, "vocab"),
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1, 2]), 1, 1, "all"),
    # n_yes + n_no overflows int64.
    (torch.rand(2, 4), torch.rand(9, 4), None, torch.tensor([1, 2]), 2 ** 62, 2 ** 62, "vocab"),
])
def test_compiled_op_checks_its_own_input(args):
    """torch.ops.ramo.judge_scores called directly (bypassing the Python checks) still raises."""
    with pytest.raises(ValueError):
        torch.ops.ramo.judge_scores(*args)


# --- no backward --------------------------------------------------------------------------

def test_requires_grad_is_refused_outside_no_grad():
    hidden, weight, _ = make_case(13, 2, 4, 64)
    weight.requires_grad_()
    for backend in ("reference", "cpu", "triton"):
        with pytest.raises(ValueError, match="weight requires grad.*no backward"):
            run(backend, hidden, weight, None)
        with torch.no_grad():
            out = run(backend, hidden, weight, None)
        assert not out.p_yes.requires_grad
        with torch.inference_mode():
            run(backend, hidden, weight, None)


@pytest.mark.parametrize("op_name", ["judge_scores", "judge_scores_triton"])
def test_raw_op_backward_raises(op_name):
    device = device_for("triton" if op_name.endswith("triton") else "cpu")
    hidden, weight, _ = make_case(14, 2, 4, 16, device=device)
    hidden.requires_grad_()
    ids = torch.tensor([1, 2, 3], device=device)
    out = getattr(torch.ops.ramo, op_name)(hidden, weight, None, ids, 1, 1, "vocab")
    with pytest.raises(RuntimeError, match="judge_scores has no backward"):
        out[0].sum().backward()


# --- opcheck, torch.compile ---------------------------------------------------------------

def _op_for(backend):
    return torch.ops.ramo.judge_scores_triton if backend == "triton" else torch.ops.ramo.judge_scores


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_opcheck(backend):
    device = device_for(backend)
    ids = torch.tensor([3, 1, 0, 7], device=device)
    cases = [
        (make_case(15, 5, 12, 70, device=device, bias=True), "vocab"),
        (make_case(16, 3, 8, 40, torch.float64, device=device), "choices"),
        (make_case(17, 4, 16, 33, torch.bfloat16, device=device, bias=True), "vocab"),
    ]
    for (hidden, weight, bias), normalize in cases:
        torch.library.opcheck(_op_for(backend), (hidden, weight, bias, ids, 2, 1, normalize))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_torch_compile_fullgraph(backend):
    device = device_for(backend)
    hidden, weight, bias = make_case(18, 6, 16, 90, bias=True, device=device)

    def scores(hidden, weight, bias):
        out = judge_scores(hidden, weight, YES, NO, OTHER, bias=bias, backend=backend)
        return out.score * out.relevance, out.p_other

    torch._dynamo.reset()
    compiled = torch.compile(scores, fullgraph=True)
    got, want = compiled(hidden, weight, bias), scores(hidden, weight, bias)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# --- dispatch, baseline, info -------------------------------------------------------------

def test_default_dispatch_on_cpu_is_cpu(monkeypatch):
    monkeypatch.delenv("RAMO_BACKEND", raising=False)
    backends._warned.clear()
    hidden, weight, _ = make_case(19, 2, 4, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the cpu kernel is built
        out = judge_scores(hidden, weight, 1, 2)
    ref = judge_scores(hidden, weight, 1, 2, backend="reference")
    assert max_error(out, JudgeScores(*(t.double() for t in ref))) <= 1e-6


def test_wrong_device_or_unknown_backend_is_an_error():
    hidden, weight, _ = make_case(20, 2, 4, 16)
    with pytest.raises(ValueError, match="cannot run tensors on cpu"):
        judge_scores(hidden, weight, 1, 2, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        judge_scores(hidden, weight, 1, 2, backend="numpy")


def test_eager_baseline_agrees_with_reference():
    """The benchmark's baseline computes the same thing (vocab mode, fp32)."""
    hidden, weight, bias = make_case(21, 8, 32, 500, bias=True)
    base = judge_scores_eager(hidden, weight, YES, NO, OTHER, bias)
    ref = run("reference", hidden, weight, bias)
    for b, r in zip(base, ref):
        torch.testing.assert_close(b, r, rtol=1e-5, atol=1e-7)


def test_ramo_info_lists_judge_scores():
    env = {**os.environ, "RAMO_BACKEND": ""}
    out = subprocess.run([sys.executable, "-m", "ramo", "info"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "judge_scores on cpu tensors -> cpu" in out
