"""Triton backend of select_rules (see ramo/reference/select_rules.py for the exact spec).

Algorithm: k rounds of masked argmax per row. Round t picks, among the valid rules that come
strictly after the previously selected one in the total order (rank key descending, then rule
index ascending), the one with the largest key, ties to the lowest index. The rank key is the
criterion with NaN replaced by -inf; "found" is tracked by a separate flag so that a valid rule
whose key is -inf stays selectable. Each round gathers a, b (and relevance) of the selected rule,
recomputes its criterion with the same operations (hence the same bits) and adds a and b to the
running rewards, which gives the selection-order sums of the reference.

Two kernels share the helpers:
  * ``_select_rules_fused_kernel``: R fits one block; the keys stay in registers across rounds.
  * ``_select_rules_chunked_kernel``: R is split into chunks of BLOCK_R; every round recomputes
    the criterion chunk by chunk and combines (key, index) pairs lexicographically.
Both do the finite check in the kernel (a per-row bit mask: 1 scores_a, 2 scores_b,
4 relevance), which the host inspects after the launch.

Rounding: every operation is done separately in the accumulation dtype (fp32, or fp64 for fp64
scores) and every launch passes ``enable_fp_fusion=False`` so no FMA is contracted.
This module imports nothing from ``ramo`` beyond this package (ramo.triton_kernels).
"""

from __future__ import annotations

import contextlib
import functools
import struct
import warnings

import torch
import triton
import triton.language as tl

from ._dtypes import TRITON_TYPES, accumulation_dtype

# Bits of the per-row non-finite mask (constexpr globals so the kernels may read them).
_BAD_A = tl.constexpr(1)
_BAD_B = tl.constexpr(2)
_BAD_REL = tl.constexpr(4)


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _load_tile(a_ptr, b_ptr, rel_ptr, valid_ptr, rows64, row_mask, cols, R, rel_stride,
               valid_stride, wd, wr, HAS_REL: tl.constexpr, HAS_VALID: tl.constexpr):
    """Criterion, rank key, candidate mask and non-finite bit mask of a [BLOCK_N, BLOCK_R] tile."""
    col_mask = cols < R
    inb = row_mask[:, None] & col_mask[None, :]
    offs = rows64[:, None] * R + cols[None, :]
    # Narrow float types are upcast at once (the interpreter's bf16 arithmetic is not exact).
    a = tl.load(a_ptr + offs, mask=inb, other=0.0).to(wd.dtype)
    b = tl.load(b_ptr + offs, mask=inb, other=0.0).to(wd.dtype)
    crit = wd * tl.abs(a - b)
    if HAS_VALID:
        voffs = rows64[:, None] * valid_stride + cols[None, :]
        ok = inb & (tl.load(valid_ptr + voffs, mask=inb, other=0) != 0)
    else:
        ok = inb
    inf = float("inf")
    bad = tl.where(ok & ~(tl.abs(a) < inf), _BAD_A, 0)
    bad = bad | tl.where(ok & ~(tl.abs(b) < inf), _BAD_B, 0)
    if HAS_REL:
        roffs = rows64[:, None] * rel_stride + cols[None, :]
        rel = tl.load(rel_ptr + roffs, mask=inb, other=0.0).to(wd.dtype)
        crit = crit + wr * rel
        bad = bad | tl.where(ok & ~(tl.abs(rel) < inf), _BAD_REL, 0)
    key = tl.where(crit != crit, -inf, crit)
    return key, ok, bad


@triton.jit
def _tile_best(key, ok, cols, last_key, last_idx, BIG: tl.constexpr):
    """Per row: best candidate of the tile strictly after (last_key, last_idx) in the order."""
    after = (key < last_key[:, None]) | ((key == last_key[:, None]) & (cols[None, :] > last_idx[:, None]))
    cand = ok & after
    neg_inf = float("-inf")
    m = tl.max(tl.where(cand, key, neg_inf), axis=1)
    hit = cand & (key == m[:, None])
    idx = tl.min(tl.where(hit, cols[None, :], BIG), axis=1)
    found = tl.max(cand.to(tl.int32), axis=1) > 0
    return m, idx, found


@triton.jit
def _emit_round(a_ptr, b_ptr, rel_ptr, idx_ptr, crit_ptr, rows64, row_mask, R, rel_stride, wd,
                wr, t, K, best_idx, found, acc_a, acc_b, HAS_REL: tl.constexpr):
    """Writes round t's index and criterion and adds the selected a, b to the rewards."""
    sel = row_mask & found
    gidx = tl.where(found, best_idx, 0).to(tl.int64)
    a = tl.load(a_ptr + rows64 * R + gidx, mask=sel, other=0.0).to(wd.dtype)
    b = tl.load(b_ptr + rows64 * R + gidx, mask=sel, other=0.0).to(wd.dtype)
    crit = wd * tl.abs(a - b)
    if HAS_REL:
        rel = tl.load(rel_ptr + rows64 * rel_stride + gidx, mask=sel, other=0.0).to(wd.dtype)
        crit = crit + wr * rel
    crit = tl.where(found, crit, float("-inf"))
    out_idx = tl.where(found, best_idx.to(tl.int64), -1)
    tl.store(idx_ptr + rows64 * K + t, out_idx, mask=row_mask)
    tl.store(crit_ptr + rows64 * K + t, crit, mask=row_mask)
    acc_a = acc_a + tl.where(sel, a, 0.0)
    acc_b = acc_b + tl.where(sel, b, 0.0)
    return acc_a, acc_b


@triton.jit
def _emit_final(ra_ptr, rb_ptr, margin_ptr, pref_ptr, bad_ptr, rows64, row_mask, tol, acc_a,
                acc_b, bad_row):
    margin = acc_a - acc_b
    pref = tl.where(margin > tol, 1, tl.where(margin < -tol, -1, 0)).to(tl.int8)
    tl.store(ra_ptr + rows64, acc_a, mask=row_mask)
    tl.store(rb_ptr + rows64, acc_b, mask=row_mask)
    tl.store(margin_ptr + rows64, margin, mask=row_mask)
    tl.store(pref_ptr + rows64, pref, mask=row_mask)
    tl.store(bad_ptr + rows64, bad_row, mask=row_mask)


@triton.jit
def _tile_rows(N, BLOCK_N: tl.constexpr):
    """This program's rows (int64, for offsets past 2^31 elements) and which exist."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    return rows.to(tl.int64), rows < N


@triton.jit
def _params(params_ptr):
    """(discrepancy weight, relevance weight, tie tolerance) in the accumulation dtype."""
    return tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2)


@triton.jit
def _bad_bits(bad):
    """Per row, which inputs (scores a, scores b, relevance) hold a non-finite valid value."""
    return tl.max(bad & _BAD_A, axis=1) | tl.max(bad & _BAD_B, axis=1) \
        | tl.max(bad & _BAD_REL, axis=1)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _select_rules_fused_kernel(a_ptr, b_ptr, rel_ptr, valid_ptr, params_ptr, idx_ptr, crit_ptr,
                               ra_ptr, rb_ptr, margin_ptr, pref_ptr, bad_ptr, N, R, K,
                               rel_stride, valid_stride, HAS_REL: tl.constexpr,
                               HAS_VALID: tl.constexpr, BLOCK_N: tl.constexpr,
                               BLOCK_R: tl.constexpr):
    """R <= BLOCK_R: the tile's keys stay in registers for all k rounds."""
    rows64, row_mask = _tile_rows(N, BLOCK_N)
    wd, wr, tol = _params(params_ptr)
    cols = tl.arange(0, BLOCK_R)

    key, ok, bad = _load_tile(a_ptr, b_ptr, rel_ptr, valid_ptr, rows64, row_mask, cols, R,
                              rel_stride, valid_stride, wd, wr, HAS_REL, HAS_VALID)
    bad_row = _bad_bits(bad)

    last_key = tl.full([BLOCK_N], float("inf"), key.dtype)
    last_idx = tl.full([BLOCK_N], -1, tl.int32)
    acc_a = tl.zeros([BLOCK_N], key.dtype)
    acc_b = tl.zeros([BLOCK_N], key.dtype)
    for t in range(K):
        m, idx, found = _tile_best(key, ok, cols, last_key, last_idx, 2147483647)
        acc_a, acc_b = _emit_round(a_ptr, b_ptr, rel_ptr, idx_ptr, crit_ptr, rows64, row_mask, R,
                                   rel_stride, wd, wr, t, K, idx, found, acc_a, acc_b, HAS_REL)
        last_key = tl.where(found, m, last_key)
        last_idx = tl.where(found, idx, last_idx)
    _emit_final(ra_ptr, rb_ptr, margin_ptr, pref_ptr, bad_ptr, rows64, row_mask, tol, acc_a,
                acc_b, bad_row)


@triton.jit
def _select_rules_chunked_kernel(a_ptr, b_ptr, rel_ptr, valid_ptr, params_ptr, idx_ptr, crit_ptr,
                                 ra_ptr, rb_ptr, margin_ptr, pref_ptr, bad_ptr, N, R, K,
                                 rel_stride, valid_stride, HAS_REL: tl.constexpr,
                                 HAS_VALID: tl.constexpr, BLOCK_N: tl.constexpr,
                                 BLOCK_R: tl.constexpr):
    """Any R: every round recomputes the criterion chunk by chunk."""
    rows64, row_mask = _tile_rows(N, BLOCK_N)
    wd, wr, tol = _params(params_ptr)
    ar = tl.arange(0, BLOCK_R)
    BIG: tl.constexpr = 2147483647

    # Finite check pass.
    bad_row = tl.zeros([BLOCK_N], tl.int32)
    for c0 in range(0, R, BLOCK_R):
        cols = c0 + ar
        key, ok, bad = _load_tile(a_ptr, b_ptr, rel_ptr, valid_ptr, rows64, row_mask, cols, R,
                                  rel_stride, valid_stride, wd, wr, HAS_REL, HAS_VALID)
        bad_row = bad_row | _bad_bits(bad)

    last_key = tl.full([BLOCK_N], float("inf"), wd.dtype)
    last_idx = tl.full([BLOCK_N], -1, tl.int32)
    acc_a = tl.zeros([BLOCK_N], wd.dtype)
    acc_b = tl.zeros([BLOCK_N], wd.dtype)
    for t in range(K):
        best_key = tl.full([BLOCK_N], float("-inf"), wd.dtype)
        best_idx = tl.full([BLOCK_N], BIG, tl.int32)
        best_found = tl.zeros([BLOCK_N], tl.int1)
        for c0 in range(0, R, BLOCK_R):
            cols = c0 + ar
            key, ok, bad = _load_tile(a_ptr, b_ptr, rel_ptr, valid_ptr, rows64, row_mask, cols,
                                      R, rel_stride, valid_stride, wd, wr, HAS_REL, HAS_VALID)
            m, idx, found = _tile_best(key, ok, cols, last_key, last_idx, BIG)
            # Chunks come in increasing index order, so an equal key keeps the earlier one.
            better = found & (~best_found | (m > best_key))
            best_key = tl.where(better, m, best_key)
            best_idx = tl.where(better, idx, best_idx)
            best_found = best_found | found
        acc_a, acc_b = _emit_round(a_ptr, b_ptr, rel_ptr, idx_ptr, crit_ptr, rows64, row_mask, R,
                                   rel_stride, wd, wr, t, K, best_idx, best_found, acc_a, acc_b,
                                   HAS_REL)
        last_key = tl.where(best_found, best_key, last_key)
        last_idx = tl.where(best_found, best_idx, last_idx)
    _emit_final(ra_ptr, rb_ptr, margin_ptr, pref_ptr, bad_ptr, rows64, row_mask, tol, acc_a,
                acc_b, bad_row)


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------

# Largest tile (BLOCK_N * BLOCK_R elements) per program. The interpreter pays per program
# instance, so it gets big tiles; a GPU gets register-sized ones.
_GPU_TILE = 4096
_GPU_MAX_BLOCK_R = 4096
_INTERP_TILE = 1 << 17
_INTERP_MAX_BLOCK_R = 1 << 14


def _block_sizes(n: int, r: int, interpreted: bool) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_R, num_warps) chosen from the problem size."""
    tile = _INTERP_TILE if interpreted else _GPU_TILE
    max_r = _INTERP_MAX_BLOCK_R if interpreted else _GPU_MAX_BLOCK_R
    block_r = min(triton.next_power_of_2(r), max_r)
    max_n = 1024 if interpreted else 64
    block_n = max(1, min(tile // block_r, triton.next_power_of_2(n), max_n))
    num_warps = 4 if block_n * block_r <= 2048 else 8
    return block_n, block_r, num_warps


def _raise_non_finite(bad: torch.Tensor, scores_a, scores_b, relevance, valid) -> None:
    """Builds the reference's message from the per-row bit masks: the first bad row; in it
    the first tensor in the order scores_a, scores_b, relevance; in that its first rule.
    relevance is in the accumulation dtype, as the kernels read it."""
    acc = str(accumulation_dtype(scores_a.dtype)).removeprefix("torch.")
    row = int(torch.nonzero(bad).flatten()[0])
    bits = int(bad[row])
    for bit, name, t in ((_BAD_A.value, "scores_a", scores_a),
                         (_BAD_B.value, "scores_b", scores_b),
                         (_BAD_REL.value, "relevance", relevance)):
        if t is None or not bits & bit:
            continue
        t_row = t[row] if t.dim() == 2 else t
        mask = ~torch.isfinite(t_row)
        if valid is not None:
            mask = mask & (valid[row] if valid.dim() == 2 else valid)
        rule = int(torch.nonzero(mask).flatten()[0])
        raise ValueError(
            f"select_rules: {name} has a non-finite value in a valid position "
            f"(row {row}, rule {rule}) as {acc}, the dtype the op computes in"
        )
    raise ValueError(f"select_rules: non-finite value in a valid position (row unknown) as "
                     f"{acc}, the dtype the op computes in")


@functools.lru_cache(maxsize=64)
def _params_tensor(weights: bytes, acc: torch.dtype, device: torch.device) -> torch.Tensor:
    """The three weights (discrepancy, relevance, tie tolerance; packed "<3d") on the device,
    each rounded to the accumulation dtype once, as torch.tensor(w, dtype=acc) does. Cached:
    copying a fresh tensor to a GPU on every call waits for the work queued before it, and
    calls mostly repeat the same weights. Keyed by their bytes, not their values: -0.0 ==
    0.0, but the criterion's sign bit follows the weight's. The kernels only read it."""
    return torch.tensor(struct.unpack("<3d", weights), dtype=acc, device=device)


def select_rules(scores_a, scores_b, relevance, valid, k, discrepancy_weight, relevance_weight,
                 tie_tolerance) -> tuple:
    """Returns (indices, criterion, reward_a, reward_b, margin, preference) like the reference."""
    n, r = scores_a.shape
    k = int(k)
    device = scores_a.device
    acc = accumulation_dtype(scores_a.dtype)
    indices = torch.empty((n, k), dtype=torch.int64, device=device)
    crit = torch.empty((n, k), dtype=acc, device=device)
    reward_a = torch.empty((n,), dtype=acc, device=device)
    reward_b = torch.empty((n,), dtype=acc, device=device)
    margin = torch.empty((n,), dtype=acc, device=device)
    preference = torch.empty((n,), dtype=torch.int8, device=device)
    if n == 0:
        return indices, crit, reward_a, reward_b, margin, preference

    params = _params_tensor(struct.pack("<3d", discrepancy_weight, relevance_weight,
                                        tie_tolerance), acc, device)
    bad = torch.empty((n,), dtype=torch.int32, device=device)
    has_rel = relevance is not None
    has_valid = valid is not None
    rel_arg = relevance if has_rel else params
    rel_stride = r if has_rel and relevance.dim() == 2 else 0
    valid_arg = valid.view(torch.uint8) if has_valid else bad
    valid_stride = r if has_valid and valid.dim() == 2 else 0

    interpreted = device.type != "cuda"
    block_n, block_r, num_warps = _block_sizes(n, r, interpreted)
    kernel = _select_rules_fused_kernel if r <= block_r else _select_rules_chunked_kernel
    grid = (triton.cdiv(n, block_n),)
    # The interpreter runs the kernel in numpy, which warns on NaN/inf arithmetic in (invalid)
    # positions; on a GPU there is nothing to silence.
    quiet = warnings.catch_warnings() if interpreted else contextlib.nullcontext()
    with quiet:
        if interpreted:
            warnings.simplefilter("ignore", RuntimeWarning)
        _launch(kernel, grid, scores_a, scores_b, rel_arg, valid_arg, params, indices, crit,
                reward_a, reward_b, margin, preference, bad, n, r, k, rel_stride, valid_stride,
                has_rel, has_valid, block_n, block_r, num_warps)
    if bool((bad != 0).any().item()):
        _raise_non_finite(bad, scores_a, scores_b, relevance, valid)
    return indices, crit, reward_a, reward_b, margin, preference


def _launch(kernel, grid, scores_a, scores_b, rel_arg, valid_arg, params, indices, crit,
            reward_a, reward_b, margin, preference, bad, n, r, k, rel_stride, valid_stride,
            has_rel, has_valid, block_n, block_r, num_warps) -> None:
    kernel[grid](
        scores_a, scores_b, rel_arg, valid_arg, params, indices, crit, reward_a, reward_b,
        margin, preference, bad, n, r, k, rel_stride, valid_stride,
        HAS_REL=has_rel, HAS_VALID=has_valid, BLOCK_N=block_n, BLOCK_R=block_r,
        num_warps=num_warps, enable_fp_fusion=False,
    )


# --------------------------------------------------------------------------------------------
# Compile check (no GPU needed)
# --------------------------------------------------------------------------------------------

def _signature(score: str, acc: str) -> dict:
    """The kernels' argument types, with a relevance and a (bool, read as u8) valid mask."""
    return {
        "a_ptr": f"*{score}", "b_ptr": f"*{score}",
        "rel_ptr": f"*{acc}",  # without relevance the params tensor stands in
        "valid_ptr": "*u8",
        "params_ptr": f"*{acc}", "idx_ptr": "*i64", "crit_ptr": f"*{acc}",
        "ra_ptr": f"*{acc}", "rb_ptr": f"*{acc}", "margin_ptr": f"*{acc}",
        "pref_ptr": "*i8", "bad_ptr": "*i32",
        "N": "i32", "R": "i32", "K": "i32", "rel_stride": "i32", "valid_stride": "i32",
        "HAS_REL": "constexpr", "HAS_VALID": "constexpr", "BLOCK_N": "constexpr",
        "BLOCK_R": "constexpr",
    }


def compile_check(arch: int = 90) -> dict:
    """Compiles every kernel of this file for CUDA sm_<arch> (no GPU needed).

    Returns {kernel_dtype: bytes of PTX}.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        score = TRITON_TYPES[dtype]
        acc = TRITON_TYPES[accumulation_dtype(dtype)]
        for kname, kernel, r in (("fused", _select_rules_fused_kernel, 1000),
                                 ("chunked", _select_rules_chunked_kernel, 65536)):
            block_n, block_r, num_warps = _block_sizes(1024, r, interpreted=False)
            src = ASTSource(
                fn=kernel,
                signature=_signature(score, acc),
                constexprs={"HAS_REL": True, "HAS_VALID": True, "BLOCK_N": block_n,
                            "BLOCK_R": block_r},
            )
            compiled = triton.compile(src, target=target,
                                      options={"num_warps": num_warps,
                                               "enable_fp_fusion": False})
            out[f"{kname}_{score}"] = len(compiled.asm["ptx"])
    return out
