"""Triton backend of judge_scores (see ramo/reference/judge_scores.py for the exact spec).

Two kernels, neither of which holds more than a tile of logits:
  * ``_lse_kernel`` ("vocab" mode only): program (i, j) takes a block of BLOCK_B rows and the
    j-th of SPLITS contiguous slices of the vocabulary. It walks its slice in tiles of
    BLOCK_V tokens; each tile's [BLOCK_B, BLOCK_V] logits come from tl.dot over D in steps
    of BLOCK_D and are folded into a running (max, sum of exp) per row, as flash softmax
    does. The partial states of the slices go to a small [SPLITS, B] workspace. Splitting
    the vocabulary gives a GPU enough programs when B is small.
  * ``_finish_kernel``: per block of rows, the logits of the listed ids (only those rows of
    weight are read: all that "choices" mode needs), the merge of the partial states into
    the vocabulary log-sum-exp, and the five outputs (kernels/common/judge_scores.h does the
    same steps for the C++ backends).

Precision: no bitwise contract here (unlike select_rules), so launches allow FMA contraction,
which only makes the dots more accurate. Logits accumulate in fp32 (fp64 for fp64 inputs). fp32 dots run as "ieee" (no
TF32). fp16 / bf16 tiles are upcast to fp32 at load when interpreted (the interpreter's bf16
arithmetic is not exact); on a GPU they are multiplied natively with an fp32 accumulator,
whose products are exact, so the two agree to rounding.
This module imports nothing from ``ramo`` beyond this package (ramo.triton_kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dtypes import TRITON_TYPES, accumulation_dtype

# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _logits_tile(h_ptr, w_ptr, rows64, row_mask, toks64, tok_mask, D, acc_zero,
                 BLOCK_D: tl.constexpr, UPCAST: tl.constexpr):
    """[BLOCK_B, BLOCK_V] = hidden[rows] @ weight[toks].T, accumulated in acc_zero's dtype."""
    acc = acc_zero
    ks = tl.arange(0, BLOCK_D)
    for k0 in range(0, D, BLOCK_D):
        k = k0 + ks
        k_mask = k < D
        h = tl.load(h_ptr + rows64[:, None] * D + k[None, :],
                    mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w = tl.load(w_ptr + toks64[None, :] * D + k[:, None],
                    mask=tok_mask[None, :] & k_mask[:, None], other=0.0)
        if UPCAST:
            h = h.to(acc.dtype)
            w = w.to(acc.dtype)
        acc = tl.dot(h, w, acc, input_precision="ieee", out_dtype=acc.dtype)
    return acc


@triton.jit
def _fold(run_max, run_sum, logits):
    """Folds a tile of logits (-inf where masked) into the running (max, sum of exp)."""
    new_max = tl.maximum(run_max, tl.max(logits, axis=1))
    # A row with only -inf so far keeps (-inf, 0); shift by 0 then, never by -inf.
    shift = tl.where(new_max == float("-inf"), 0.0, new_max)
    run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(logits - shift[:, None]), axis=1)
    return new_max, run_sum


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _lse_kernel(h_ptr, w_ptr, bias_ptr, max_ptr, sum_ptr, B, V, D, tiles_per_split,
                HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, BLOCK_B: tl.constexpr,
                BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    """Partial vocabulary (max, sum of exp) of a row block over one slice of the vocabulary."""
    pid_b = tl.program_id(0)
    split = tl.program_id(1)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    rows64 = rows.to(tl.int64)
    acc_dtype = max_ptr.dtype.element_ty
    acc_zero = tl.zeros([BLOCK_B, BLOCK_V], acc_dtype)
    run_max = tl.full([BLOCK_B], float("-inf"), acc_dtype)
    run_sum = tl.zeros([BLOCK_B], acc_dtype)
    first = split * tiles_per_split * BLOCK_V
    for t in range(0, tiles_per_split):
        toks = first + t * BLOCK_V + tl.arange(0, BLOCK_V)
        tok_mask = toks < V
        toks64 = toks.to(tl.int64)
        logits = _logits_tile(h_ptr, w_ptr, rows64, row_mask, toks64, tok_mask, D, acc_zero,
                              BLOCK_D, UPCAST)
        if HAS_BIAS:
            logits += tl.load(bias_ptr + toks64, mask=tok_mask, other=0.0)[None, :]
        logits = tl.where(tok_mask[None, :], logits, float("-inf"))
        run_max, run_sum = _fold(run_max, run_sum, logits)
    tl.store(max_ptr + split * B + rows64, run_max, mask=row_mask)
    tl.store(sum_ptr + split * B + rows64, run_sum, mask=row_mask)


@triton.jit
def _finish_kernel(h_ptr, w_ptr, bias_ptr, ids_ptr, max_ptr, sum_ptr, yes_ptr, no_ptr, other_ptr,
                   score_ptr, rel_ptr, B, D, L, n_yes, n_no, splits, HAS_BIAS: tl.constexpr, CHOICES: tl.constexpr,
                   UPCAST: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_L: tl.constexpr,
                   BLOCK_D: tl.constexpr):
    """Listed logits, vocabulary log-sum-exp and the five [B] outputs of a block of rows."""
    pid_b = tl.program_id(0)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK_L)
    col_mask = cols < L
    toks64 = tl.load(ids_ptr + cols, mask=col_mask, other=0)
    acc_dtype = yes_ptr.dtype.element_ty
    listed = _logits_tile(h_ptr, w_ptr, rows64, row_mask, toks64, col_mask, D,
                          tl.zeros([BLOCK_B, BLOCK_L], acc_dtype), BLOCK_D, UPCAST)
    if HAS_BIAS:
        listed += tl.load(bias_ptr + toks64, mask=col_mask, other=0.0)[None, :]
    listed = tl.where(col_mask[None, :], listed, float("-inf"))

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
        for s in range(0, splits):
            m = tl.load(max_ptr + s * B + rows64, mask=row_mask, other=float("-inf"))
            sm = tl.load(sum_ptr + s * B + rows64, mask=row_mask, other=0.0)
            new_max = tl.maximum(run_max, m)
            safe = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * tl.exp(run_max - safe) + sm * tl.exp(m - safe)
            run_max = new_max
        # exp(logit - max) / sum, as torch.softmax: one log-sum-exp max + log(sum) would be
        # rounded to the ulp of the max (2e-3 for fp32 logits near 16384). Rows past B (state
        # (-inf, 0)) never reach a store; finite stand-ins keep inf / NaN out all the same.
        empty = run_max == float("-inf")
        p = tl.exp(listed - tl.where(empty, 0.0, run_max)[:, None])
        z = tl.where(empty, 1.0, run_sum)
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


def _lse_blocks(b: int, v: int, d: int, interpreted: bool) -> tuple[int, int, int, int]:
    """(BLOCK_B, BLOCK_V, BLOCK_D, num_warps) of _lse_kernel.

    The interpreter pays per program and per operation, not per element, so it gets large
    tiles; a GPU gets register-sized ones (tl.dot needs every side >= 16).
    """
    if interpreted:
        return (max(16, min(triton.next_power_of_2(b), 64)),
                max(16, min(triton.next_power_of_2(v), 512)),
                max(16, min(triton.next_power_of_2(d), 256)), 4)
    return max(16, min(triton.next_power_of_2(b), 64)), 128, 64, 4


def _finish_blocks(b: int, n_listed: int, d: int, interpreted: bool) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_L, BLOCK_D) of _finish_kernel."""
    block_l = max(16, triton.next_power_of_2(n_listed))
    block_d = max(16, min(triton.next_power_of_2(d), 256 if interpreted else 64))
    return max(16, min(triton.next_power_of_2(b), 64 if interpreted else 32)), block_l, block_d


def _splits(b: int, v: int, block_b: int, block_v: int, device: torch.device,
            wanted: int | None = None) -> tuple[int, int]:
    """(number of vocabulary slices, tiles per slice): about four programs per SM on a GPU,
    one slice when interpreted (programs run one after another there), or `wanted`."""
    tiles = triton.cdiv(v, block_v)
    if wanted is None and device.type != "cuda":
        return 1, tiles
    if wanted is None:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        wanted = max(1, (4 * sms) // triton.cdiv(b, block_b))
    per = triton.cdiv(tiles, min(wanted, tiles))
    return triton.cdiv(tiles, per), per


def judge_scores(hidden, weight, bias, ids, n_yes, n_no, normalize, *, tiles=None) -> tuple:
    """Returns (p_yes, p_no, p_other, score, relevance) like the reference.

    hidden [B, D], weight [V, D] contiguous, same dtype; bias None or [V] contiguous in the
    accumulation dtype; ids int64 [L] (yes, then no, then other ids). Checked by the caller.
    tiles: None, or (BLOCK_B, BLOCK_V, BLOCK_D, slices) to force the vocabulary kernel's
    tiling, so that the tests run a GPU's small tiles and several slices in the interpreter.
    """
    b, d = hidden.shape
    v = weight.shape[0]
    n_listed = ids.shape[0]
    device = hidden.device
    acc = accumulation_dtype(hidden.dtype)
    # Five separate tensors: a custom op's outputs may not alias one another.
    out = tuple(torch.empty((b,), dtype=acc, device=device) for _ in range(5))
    if b == 0:
        return out
    interpreted = device.type != "cuda"
    # Narrow types are multiplied natively on a GPU; fp32 / fp64 tiles need no conversion.
    upcast = interpreted and hidden.dtype in (torch.float16, torch.bfloat16)
    choices = normalize == "choices"
    has_bias = bias is not None
    bias_arg = bias if has_bias else out[0]
    splits = 1
    max_ws = sum_ws = out[0]  # unread in choices mode
    if not choices:
        block_b, block_v, block_d, num_warps = _lse_blocks(b, v, d, interpreted)
        wanted = None
        if tiles is not None:
            block_b, block_v, block_d, wanted = tiles
        splits, per = _splits(b, v, block_b, block_v, device, wanted)
        max_ws = torch.empty((splits, b), dtype=acc, device=device)
        sum_ws = torch.empty((splits, b), dtype=acc, device=device)
        _lse_kernel[(triton.cdiv(b, block_b), splits)](
            hidden, weight, bias_arg, max_ws, sum_ws, b, v, d, per,
            HAS_BIAS=has_bias, UPCAST=upcast, BLOCK_B=block_b, BLOCK_V=block_v,
            BLOCK_D=block_d, num_warps=num_warps, enable_fp_fusion=True,
        )
    block_b, block_l, block_d = _finish_blocks(b, n_listed, d, interpreted)
    _finish_kernel[(triton.cdiv(b, block_b),)](
        hidden, weight, bias_arg, ids, max_ws, sum_ws, *out, b, d, n_listed, n_yes, n_no, splits,
        HAS_BIAS=has_bias, CHOICES=choices, UPCAST=upcast, BLOCK_B=block_b, BLOCK_L=block_l,
        BLOCK_D=block_d, num_warps=4, enable_fp_fusion=True,
    )
    return out


# --------------------------------------------------------------------------------------------
# Compile check (no GPU needed)
# --------------------------------------------------------------------------------------------

def _lse_signature(x: str, acc: str) -> dict:
    return {"h_ptr": f"*{x}", "w_ptr": f"*{x}", "bias_ptr": f"*{acc}", "max_ptr": f"*{acc}",
            "sum_ptr": f"*{acc}", "B": "i32", "V": "i32", "D": "i32", "tiles_per_split": "i32",
            "HAS_BIAS": "constexpr", "UPCAST": "constexpr", "BLOCK_B": "constexpr",
            "BLOCK_V": "constexpr", "BLOCK_D": "constexpr"}


def _finish_signature(x: str, acc: str) -> dict:
    return {"h_ptr": f"*{x}", "w_ptr": f"*{x}", "bias_ptr": f"*{acc}", "ids_ptr": "*i64",
            "max_ptr": f"*{acc}", "sum_ptr": f"*{acc}", "yes_ptr": f"*{acc}", "no_ptr": f"*{acc}",
            "other_ptr": f"*{acc}", "score_ptr": f"*{acc}", "rel_ptr": f"*{acc}", "B": "i32",
            "D": "i32", "L": "i32", "n_yes": "i32", "n_no": "i32", "splits": "i32",
            "HAS_BIAS": "constexpr", "CHOICES": "constexpr", "UPCAST": "constexpr",
            "BLOCK_B": "constexpr", "BLOCK_L": "constexpr", "BLOCK_D": "constexpr"}


def compile_check(arch: int = 90) -> dict:
    """Compiles every kernel of this file for CUDA sm_<arch> with the GPU launch settings
    (no GPU needed). Returns {kernel_dtype_mode: bytes of PTX}."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        x, acc = TRITON_TYPES[dtype], TRITON_TYPES[accumulation_dtype(dtype)]
        block_b, block_v, block_d, num_warps = _lse_blocks(256, 128256, 4096, interpreted=False)
        src = ASTSource(fn=_lse_kernel, signature=_lse_signature(x, acc),
                        constexprs={"HAS_BIAS": True, "UPCAST": False, "BLOCK_B": block_b,
                                    "BLOCK_V": block_v, "BLOCK_D": block_d})
        compiled = triton.compile(src, target=target, options={"num_warps": num_warps,
                                                                "enable_fp_fusion": True})
        out[f"lse_{x}"] = len(compiled.asm["ptx"])
        block_b, block_l, block_d = _finish_blocks(256, 5, 4096, interpreted=False)
        for choices in (False, True):
            src = ASTSource(fn=_finish_kernel, signature=_finish_signature(x, acc),
                            constexprs={"HAS_BIAS": True, "CHOICES": choices, "UPCAST": False,
                                        "BLOCK_B": block_b, "BLOCK_L": block_l,
                                        "BLOCK_D": block_d})
            compiled = triton.compile(src, target=target, options={"num_warps": 4,
                                                                    "enable_fp_fusion": True})
            out[f"finish_{x}_{'choices' if choices else 'vocab'}"] = len(compiled.asm["ptx"])
    return out
