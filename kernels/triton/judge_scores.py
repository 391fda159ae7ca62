"""Triton backend of judge_scores (see ramo/reference/judge_scores.py for the exact spec).

The logits come from torch.mm, never more than a chunk of them at a time, and two Triton
kernels fold and finish them:
  * "vocab" mode cuts the vocabulary into chunks of whole SEGMENT-column segments. Each
    chunk's [B, c] logits are one torch.mm into a buffer that every chunk reuses (cuBLAS on a
    GPU: a fused Triton matmul in fp32 has no tensor cores to run on and reached 46-66% of
    eager PyTorch's speed on an H200), then ``_fold_kernel`` reduces each (block of rows,
    segment) to a partial (max, sum of exp) in a small [segments, B] workspace.
  * ``_finish_kernel`` merges a block of rows' partial states into the vocabulary log-sum-exp
    and computes the five outputs from the listed ids' logits, which one small torch.mm over
    only those rows of weight gives (all that "choices" mode reads). kernels/common/
    judge_scores.h does the same steps for the C++ backends.

Precision: logits accumulate in fp32 (fp64 for fp64 inputs), never in fp16 / bf16: on a GPU
torch.mm multiplies fp16 / bf16 straight into fp32 (its out_dtype overload, torch 2.8 on:
exact products, fp32 sums); interpreted on the CPU, where that overload does not exist (or
before torch 2.8), each chunk of weight is converted to fp32 first. No bitwise contract
here (unlike select_rules), so launches allow FMA contraction. This module imports nothing
from ``ramo`` beyond this package (ramo.triton_kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dtypes import TRITON_TYPES, accumulation_dtype

# Vocabulary columns per partial state: one program reduces one row block's segment.
SEGMENT = 1024
# torch.mm(..., out_dtype=torch.float32) for fp16 / bf16 inputs exists from torch 2.8 on.
_MIXED_MATMUL = torch.torch_version.TorchVersion(torch.__version__) >= (2, 8)

# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _fold_kernel(logits_ptr, bias_ptr, max_ptr, sum_ptr, B, C, first_segment,
                 HAS_BIAS: tl.constexpr, BLOCK_B: tl.constexpr, SEGMENT: tl.constexpr):
    """Partial (max, sum of exp) of a block of rows over one segment of a [B, C] chunk."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    rows64 = rows.to(tl.int64)
    seg = tl.program_id(1)
    cols = seg * SEGMENT + tl.arange(0, SEGMENT)
    col_mask = cols < C
    mask = row_mask[:, None] & col_mask[None, :]
    x = tl.load(logits_ptr + rows64[:, None] * C + cols[None, :], mask=mask, other=0.0)
    if HAS_BIAS:
        x += tl.load(bias_ptr + cols, mask=col_mask, other=0.0)[None, :]
    x = tl.where(mask, x, float("-inf"))
    m = tl.max(x, axis=1)
    # A segment of masked (-inf) tokens only keeps (-inf, 0): shift by 0 then, never by -inf.
    shift = tl.where(m == float("-inf"), 0.0, m)
    s = tl.sum(tl.exp(x - shift[:, None]), axis=1)
    at = (first_segment + seg) * B + rows64
    tl.store(max_ptr + at, m, mask=row_mask)
    tl.store(sum_ptr + at, s, mask=row_mask)


@triton.jit
def _finish_kernel(listed_ptr, max_ptr, sum_ptr, yes_ptr, no_ptr, other_ptr, score_ptr,
                   rel_ptr, B, L, n_yes, n_no, segments, CHOICES: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_L: tl.constexpr):
    """Vocabulary log-sum-exp and the five [B] outputs of a block of rows."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK_L)
    col_mask = cols < L
    # Rows past B read 0 (finite: no 0 / 0 in them, though they are never stored).
    listed = tl.load(listed_ptr + rows64[:, None] * L + cols[None, :],
                     mask=row_mask[:, None] & col_mask[None, :], other=0.0)
    listed = tl.where(col_mask[None, :], listed, float("-inf"))
    acc_dtype = yes_ptr.dtype.element_ty

    in_yes = cols < n_yes
    in_no = (cols >= n_yes) & (cols < n_yes + n_no)
    in_other = (cols >= n_yes + n_no) & col_mask
    # Relevance: set sums of exp(listed - listed max); the normaliser cancels in the ratio.
    top = tl.max(listed, axis=1)
    shift = tl.where(top == float("-inf"), 0.0, top)
    e = tl.exp(listed - shift[:, None])
    s_yes = tl.sum(tl.where(in_yes[None, :], e, 0.0), axis=1)
    s_no = tl.sum(tl.where(in_no[None, :], e, 0.0), axis=1)
    s_other = tl.sum(tl.where(in_other[None, :], e, 0.0), axis=1)
    answer = s_yes + s_no
    total = answer + s_other
    relevance = tl.where(total > 0.0, answer / tl.where(total > 0.0, total, 1.0), 0.0)
    if CHOICES:
        p_yes = s_yes / total
        p_no = s_no / total
        p_other = s_other / total
    else:
        run_max = tl.full([BLOCK_B], float("-inf"), acc_dtype)
        run_sum = tl.zeros([BLOCK_B], acc_dtype)
        for s in range(0, segments):
            m = tl.load(max_ptr + s * B + rows64, mask=row_mask, other=float("-inf"))
            sm = tl.load(sum_ptr + s * B + rows64, mask=row_mask, other=0.0)
            new_max = tl.maximum(run_max, m)
            safe = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * tl.exp(run_max - safe) + sm * tl.exp(m - safe)
            run_max = new_max
        # exp(logit - max) / sum, as torch.softmax: one log-sum-exp max + log(sum) would be
        # rounded to the ulp of the max (2e-3 for fp32 logits near 16384). A row whose every
        # logit is -inf (the host refuses a bias that masks every token, but finite inputs can
        # overflow to -inf) is NaN, as torch.softmax's 0 / 0; so are rows past B (state
        # (-inf, 0)), which never reach a store.
        empty = run_max == float("-inf")
        p = tl.exp(listed - tl.where(empty, 0.0, run_max)[:, None])
        z = tl.where(empty, float("nan"), run_sum)
        p_yes = tl.sum(tl.where(in_yes[None, :], p, 0.0), axis=1) / z
        p_no = tl.sum(tl.where(in_no[None, :], p, 0.0), axis=1) / z
        p_other = tl.sum(tl.where(in_other[None, :], p, 0.0), axis=1) / z
    tl.store(yes_ptr + rows64, p_yes, mask=row_mask)
    tl.store(no_ptr + rows64, p_no, mask=row_mask)
    tl.store(other_ptr + rows64, p_other, mask=row_mask)
    tl.store(score_ptr + rows64, p_yes - p_no, mask=row_mask)
    tl.store(rel_ptr + rows64, relevance, mask=row_mask)


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------


def _chunk_columns(b: int, v: int, segment: int) -> int:
    """Vocabulary rows per chunk: about V / 16 (each matmul big enough for cuBLAS, the buffer
    1/16 of the logits), at most 2^24 logits in the buffer at large B, in whole segments (or
    the whole vocabulary)."""
    chunk = triton.cdiv(triton.cdiv(v, 16), segment) * segment
    chunk = min(chunk, max(segment, (1 << 24) // max(b, 1) // segment * segment))
    return min(chunk, v)


def _block_rows(b: int, interpreted: bool, fold: bool) -> int:
    """Rows per program: the interpreter pays per program, so it gets many; a GPU gets
    register-sized tiles ([4, SEGMENT] logits for the fold)."""
    if interpreted:
        return max(1, min(triton.next_power_of_2(b), 64))
    return 4 if fold else max(1, min(triton.next_power_of_2(b), 32))


def _listed_logits(hidden_acc, weight, bias, ids):
    """[B, L] logits of the listed ids in the accumulation dtype: only those rows of weight."""
    listed = hidden_acc @ weight.index_select(0, ids).to(hidden_acc.dtype).T
    if bias is not None:
        listed += bias.index_select(0, ids)
    return listed.contiguous()


def judge_scores(hidden, weight, bias, ids, n_yes, n_no, normalize, *, chunk=None,
                 segment=SEGMENT) -> tuple:
    """Returns (p_yes, p_no, p_other, score, relevance) like the reference.

    hidden [B, D], weight [V, D] contiguous, same dtype; bias None or [V] contiguous in the
    accumulation dtype; ids int64 [L] (yes, then no, then other ids). Checked by the caller.
    chunk, segment: force the vocabulary's cut (chunk a multiple of segment, a power of 2),
    so that the tests run many chunks and segments on small vocabularies.
    """
    b = hidden.shape[0]
    v = weight.shape[0]
    device = hidden.device
    acc = accumulation_dtype(hidden.dtype)
    # Five separate tensors: a custom op's outputs may not alias one another.
    out = tuple(torch.empty((b,), dtype=acc, device=device) for _ in range(5))
    if b == 0:
        return out
    interpreted = device.type != "cuda"
    hidden_acc = hidden.to(acc)
    listed = _listed_logits(hidden_acc, weight, bias, ids)
    choices = normalize == "choices"
    segments = 1
    max_ws = sum_ws = out[0]  # unread in choices mode
    if not choices:
        segments = triton.cdiv(v, segment)
        max_ws = torch.empty((segments, b), dtype=acc, device=device)
        sum_ws = torch.empty((segments, b), dtype=acc, device=device)
        chunk = min(chunk or _chunk_columns(b, v, segment), v)
        narrow = weight.dtype != acc
        mixed = narrow and not interpreted and _MIXED_MATMUL  # fp16 / bf16 into fp32 by cuBLAS
        block = torch.empty(b * chunk, dtype=acc, device=device)
        converted = torch.empty((chunk, weight.shape[1]), dtype=acc, device=device) \
            if narrow and not mixed else None
        block_b = _block_rows(b, interpreted, fold=True)
        for v0 in range(0, v, chunk):
            c = min(chunk, v - v0)
            w = weight[v0:v0 + c]
            logits = block[:b * c].view(b, c)
            if mixed:
                torch.mm(hidden, w.T, out_dtype=acc, out=logits)
            else:
                if converted is not None:
                    w = converted[:c].copy_(w)
                torch.mm(hidden_acc, w.T, out=logits)
            _fold_kernel[(triton.cdiv(b, block_b), triton.cdiv(c, segment))](
                logits, bias[v0:] if bias is not None else logits, max_ws, sum_ws, b, c,
                v0 // segment, HAS_BIAS=bias is not None, BLOCK_B=block_b, SEGMENT=segment,
                num_warps=4, enable_fp_fusion=True,
            )
    block_b = _block_rows(b, interpreted, fold=False)
    block_l = max(16, triton.next_power_of_2(ids.shape[0]))
    _finish_kernel[(triton.cdiv(b, block_b),)](
        listed, max_ws, sum_ws, *out, b, ids.shape[0], n_yes, n_no, segments, CHOICES=choices,
        BLOCK_B=block_b, BLOCK_L=block_l, num_warps=4, enable_fp_fusion=True,
    )
    return out


# --------------------------------------------------------------------------------------------
# Compile check (no GPU needed)
# --------------------------------------------------------------------------------------------

def compile_check(arch: int = 90) -> dict:
    """Compiles both kernels for CUDA sm_<arch> with the GPU launch settings (no GPU
    needed). Returns {kernel_dtype_mode: bytes of PTX}."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    options = {"num_warps": 4, "enable_fp_fusion": True}
    out = {}
    for dtype in (torch.float32, torch.float64):  # the accumulation dtypes
        acc = TRITON_TYPES[dtype]
        src = ASTSource(
            fn=_fold_kernel,
            signature={"logits_ptr": f"*{acc}", "bias_ptr": f"*{acc}", "max_ptr": f"*{acc}",
                       "sum_ptr": f"*{acc}", "B": "i32", "C": "i32", "first_segment": "i32",
                       "HAS_BIAS": "constexpr", "BLOCK_B": "constexpr", "SEGMENT": "constexpr"},
            constexprs={"HAS_BIAS": True, "BLOCK_B": _block_rows(256, False, fold=True),
                        "SEGMENT": SEGMENT})
        out[f"fold_{acc}"] = len(triton.compile(src, target=target, options=options).asm["ptx"])
        for choices in (False, True):
            src = ASTSource(
                fn=_finish_kernel,
                signature={"listed_ptr": f"*{acc}", "max_ptr": f"*{acc}", "sum_ptr": f"*{acc}",
                           "yes_ptr": f"*{acc}", "no_ptr": f"*{acc}", "other_ptr": f"*{acc}",
                           "score_ptr": f"*{acc}", "rel_ptr": f"*{acc}", "B": "i32", "L": "i32",
                           "n_yes": "i32", "n_no": "i32", "segments": "i32",
                           "CHOICES": "constexpr", "BLOCK_B": "constexpr",
                           "BLOCK_L": "constexpr"},
                constexprs={"CHOICES": choices, "BLOCK_B": _block_rows(256, False, fold=False),
                            "BLOCK_L": 16})
            compiled = triton.compile(src, target=target, options=options)
            out[f"finish_{acc}_{'choices' if choices else 'vocab'}"] = len(compiled.asm["ptx"])
    return out
