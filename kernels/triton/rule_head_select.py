"""Triton backend of rule_head_select's sparse backward (ramo/reference/rule_head_select.py is
the spec; the forward is two torch.addmm and the Triton select_rules kernel, see
ramo/ops/rule_head_select.py).

Three kernels, no atomics, so the gradients are the same bits from run to run:
  * ``_grad_hidden_kernel``: one program per (block of BLOCK_N rows, block of BLOCK_D
    columns) sums the k selected weight rows weight[idx[n, j], cols] in selection order and
    writes grad_hidden_x = g_x[n] * sum. Padding (index -1) is skipped; a row that selected
    nothing gets 0.
  * ``_piece_kernel``: the rows are first grouped by the rule they selected (a stable sort of
    the [N, k] indices; per rule its rows in row order), and each rule's rows cut into pieces
    of at most 256 rows, so that a popular rule is many programs, not one long one. One
    program per (piece, block of BLOCK_D columns) sums g_a[n] * hidden_a[n, cols] + g_b[n] *
    hidden_b[n, cols] (and g_a + g_b, in the first column block) over its piece's rows.
    Pieces of all rules over the same rows run together, so the rows they share (each row
    serves its k rules) may come from L2 rather than DRAM.
  * ``_rule_sum_kernel``: grad_weight[rule, cols] and grad_bias[rule], the rule's pieces
    added in order.
This replaces one atomic add per (row, selected rule, column), which bounded the backward
(0.79x eager at N = 16384, D = 4096, R = 100 on an H200).

Rounding: every launch passes ``enable_fp_fusion=False``, like select_rules; sums in fp32
(fp64 for fp64 heads). This module imports nothing from ``ramo`` beyond this package
(ramo.triton_kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dtypes import TRITON_TYPES, accumulation_dtype


@triton.jit
def _columns(D, BLOCK_D: tl.constexpr):
    """(column block, its columns, which of them exist): grid axis 1 of every kernel here."""
    col_block = tl.program_id(1)
    cols = col_block * BLOCK_D + tl.arange(0, BLOCK_D)
    return col_block, cols, cols < D


@triton.jit
def _grad_hidden_kernel(ga_ptr, gb_ptr, idx_ptr, w_ptr, gha_ptr, ghb_ptr, N, D, K,
                        BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    rows64 = rows.to(tl.int64)
    _, cols, col_mask = _columns(D, BLOCK_D)
    inb = row_mask[:, None] & col_mask[None, :]
    ga = tl.load(ga_ptr + rows64, mask=row_mask, other=0.0)
    gb = tl.load(gb_ptr + rows64, mask=row_mask, other=0.0)
    total = tl.zeros([BLOCK_N, BLOCK_D], ga.dtype)
    selected = tl.zeros([BLOCK_N], tl.int1)
    for j in range(K):
        rule = tl.load(idx_ptr + rows64 * K + j, mask=row_mask, other=-1)
        sel = row_mask & (rule >= 0)
        selected = selected | sel
        rule64 = tl.where(sel, rule, 0).to(tl.int64)
        # Narrow float types are upcast at once (the interpreter's bf16 arithmetic is not exact).
        w = tl.load(w_ptr + rule64[:, None] * D + cols[None, :],
                    mask=sel[:, None] & col_mask[None, :], other=0.0).to(ga.dtype)
        total = total + w
    # A row that selected nothing gets 0 as in autograd, not g * 0 (NaN for an inf or NaN g).
    ga = tl.where(selected, ga, 0.0)
    gb = tl.where(selected, gb, 0.0)
    offs = rows64[:, None] * D + cols[None, :]
    tl.store(gha_ptr + offs, (ga[:, None] * total).to(gha_ptr.dtype.element_ty), mask=inb)
    tl.store(ghb_ptr + offs, (gb[:, None] * total).to(ghb_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _piece_kernel(ga_ptr, gb_ptr, rows_ptr, starts_ptr, ends_ptr, ha_ptr, hb_ptr, part_ptr,
                  part_bias_ptr, D, BLOCK_ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    """The sum of one piece of a rule's rows over one block of columns (and of their bias
    terms, by the first column block)."""
    piece = tl.program_id(0)
    col_block, cols, col_mask = _columns(D, BLOCK_D)
    start = tl.load(starts_ptr + piece)
    end = tl.load(ends_ptr + piece)
    acc_dtype = part_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_ROWS, BLOCK_D], acc_dtype)
    bias = tl.zeros([BLOCK_ROWS], acc_dtype)
    for i in range(start, end, BLOCK_ROWS):
        at = i + tl.arange(0, BLOCK_ROWS)
        in_piece = at < end
        rows64 = tl.load(rows_ptr + at, mask=in_piece, other=0)
        ga = tl.load(ga_ptr + rows64, mask=in_piece, other=0.0)
        gb = tl.load(gb_ptr + rows64, mask=in_piece, other=0.0)
        offs = rows64[:, None] * D + cols[None, :]
        inb = in_piece[:, None] & col_mask[None, :]
        ha = tl.load(ha_ptr + offs, mask=inb, other=0.0).to(acc_dtype)
        hb = tl.load(hb_ptr + offs, mask=inb, other=0.0).to(acc_dtype)
        acc += ga[:, None] * ha + gb[:, None] * hb
        bias += ga + gb
    tl.store(part_ptr + piece.to(tl.int64) * D + cols, tl.sum(acc, axis=0), mask=col_mask)
    # The bias once per piece, by the first column block (a [1] store: the interpreter takes
    # no scalar mask).
    one = tl.arange(0, 1)
    tl.store(part_bias_ptr + piece + one, tl.zeros([1], acc_dtype) + tl.sum(bias, axis=0),
             mask=(one + col_block) == 0)


@triton.jit
def _rule_sum_kernel(part_ptr, part_bias_ptr, first_ptr, count_ptr, gw_ptr, gbias_ptr, D,
                     BLOCK_D: tl.constexpr):
    """grad_weight[rule, cols] (and grad_bias[rule]): the rule's pieces added in order."""
    rule = tl.program_id(0)
    col_block, cols, col_mask = _columns(D, BLOCK_D)
    first = tl.load(first_ptr + rule)
    count = tl.load(count_ptr + rule)
    acc_dtype = gw_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_D], acc_dtype)
    one = tl.arange(0, 1)
    bias = tl.zeros([1], acc_dtype)
    for p in range(first, first + count):
        acc += tl.load(part_ptr + p * D + cols, mask=col_mask, other=0.0)
        bias += tl.load(part_bias_ptr + p + one)
    tl.store(gw_ptr + rule.to(tl.int64) * D + cols, acc, mask=col_mask)
    tl.store(gbias_ptr + rule + one, bias, mask=(one + col_block) == 0)


# Tile sizes: the interpreter pays per program instance, so it gets big tiles.
_GPU_BLOCK_N, _GPU_BLOCK_D = 16, 128
_GPU_BLOCK_ROWS = 8
# Rows per piece of a rule's rows: a popular rule (selected by many rows) is cut into many
# pieces, so that no program sums far more rows than the others.
_GPU_PIECE = 256
_INTERP_TILE = 1 << 16


def _block_sizes(n: int, d: int, interpreted: bool) -> tuple[int, int, int, int, int]:
    """(BLOCK_N, BLOCK_D, BLOCK_ROWS, rows per piece, num_warps)."""
    if interpreted:
        block_d = min(triton.next_power_of_2(max(d, 1)), 4096)
        block_n = max(1, min(_INTERP_TILE // block_d, triton.next_power_of_2(max(n, 1)), 1024))
        return block_n, block_d, block_n, 1 << 30, 4
    return _GPU_BLOCK_N, _GPU_BLOCK_D, _GPU_BLOCK_ROWS, _GPU_PIECE, 4


def _rule_pieces(indices: torch.Tensor, r: int, piece: int) -> dict:
    """Each rule's rows (those that selected it, in row order: a stable sort of the [N, k]
    indices, padding -1 after every rule), cut into pieces of at most `piece` rows. Piece p
    covers rows[starts[p]:ends[p]] (empty past the last piece); rule j's pieces are
    first[j] .. first[j] + count[j] - 1. Nothing is read back to the host: the pieces are
    bounded by N k / piece + R, which sizes the grid."""
    n, k = indices.shape
    device = indices.device
    key = indices.reshape(-1)
    key = torch.where(key >= 0, key, r)
    sorted_key, order = torch.sort(key, stable=True)
    rows = torch.div(order, k, rounding_mode="floor")
    offsets = torch.searchsorted(sorted_key, torch.arange(r + 1, device=device))
    count = torch.div(offsets[1:] - offsets[:-1] + piece - 1, piece, rounding_mode="floor")
    end_piece = torch.cumsum(count, 0)
    first = end_piece - count
    total = triton.cdiv(n * k, piece) + r
    p = torch.arange(total, device=device)
    rule = torch.searchsorted(end_piece, p, right=True).clamp_(max=r - 1)
    used = p < end_piece[-1]
    starts = offsets[rule] + (p - first[rule]) * piece
    ends = torch.minimum(starts + piece, offsets[rule + 1])
    zero = torch.zeros((), dtype=starts.dtype, device=device)
    return {"rows": rows, "starts": torch.where(used, starts, zero),
            "ends": torch.where(used, ends, zero), "first": first, "count": count,
            "total": total}


def rule_head_select_backward(grad_a, grad_b, indices, hidden_a, hidden_b, weight, *,
                              piece=None) -> tuple:
    """(grad_hidden_a, grad_hidden_b, grad_weight, grad_bias) of the selected-rules part.

    All inputs contiguous; grad_a, grad_b [N] in the accumulation dtype; indices int64 [N, k]
    in [-1, R). piece: rows per piece of a rule's rows (tests force small pieces in the
    interpreter, whose default is one piece per rule)."""
    n, d = hidden_a.shape
    r, k = weight.shape[0], indices.shape[1]
    acc = accumulation_dtype(hidden_a.dtype)
    device = hidden_a.device
    interpreted = device.type != "cuda"
    # The interpreter rounds fp32 -> bf16 wrongly: there the kernel writes fp32 and torch
    # rounds.
    out_dtype = acc if interpreted and hidden_a.dtype == torch.bfloat16 else hidden_a.dtype
    grad_hidden_a = torch.empty((n, d), dtype=out_dtype, device=device)
    grad_hidden_b = torch.empty((n, d), dtype=out_dtype, device=device)
    grad_weight = torch.zeros((r, d), dtype=acc, device=device)
    grad_bias = torch.zeros((r,), dtype=acc, device=device)
    ga, gb = grad_a.to(acc), grad_b.to(acc)
    block_n, block_d, block_rows, piece_rows, num_warps = _block_sizes(n, d, interpreted)
    piece_rows = piece or piece_rows
    col_blocks = max(1, triton.cdiv(d, block_d))  # d = 0 still owes grad_bias
    launch = {"num_warps": num_warps, "enable_fp_fusion": False}
    if n > 0 and d > 0:  # every rule padding (R = 0 included): zeros
        _grad_hidden_kernel[(triton.cdiv(n, block_n), col_blocks)](
            ga, gb, indices, weight, grad_hidden_a, grad_hidden_b, n, d, k,
            BLOCK_N=block_n, BLOCK_D=block_d, **launch,
        )
    if n > 0 and r > 0 and k > 0:
        pieces = _rule_pieces(indices, r, piece_rows)
        part = torch.empty((pieces["total"], d), dtype=acc, device=device)
        part_bias = torch.empty((pieces["total"],), dtype=acc, device=device)
        _piece_kernel[(pieces["total"], col_blocks)](
            ga, gb, pieces["rows"], pieces["starts"], pieces["ends"], hidden_a, hidden_b, part,
            part_bias, d, BLOCK_ROWS=block_rows, BLOCK_D=block_d, **launch,
        )
        _rule_sum_kernel[(r, col_blocks)](
            part, part_bias, pieces["first"], pieces["count"], grad_weight, grad_bias, d,
            BLOCK_D=block_d, **launch,
        )
    return (grad_hidden_a.to(hidden_a.dtype), grad_hidden_b.to(hidden_a.dtype),
            grad_weight.to(weight.dtype),
            grad_bias.to(weight.dtype))


# --------------------------------------------------------------------------------------------
# Compile check (no GPU needed)
# --------------------------------------------------------------------------------------------

def compile_check(arch: int = 90) -> dict:
    """Compiles the three backward kernels for CUDA sm_<arch> in every dtype (no GPU needed).

    Returns {kernel_dtype: bytes of PTX}."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        x = TRITON_TYPES[dtype]
        acc = TRITON_TYPES[accumulation_dtype(dtype)]
        block_n, block_d, block_rows, _, num_warps = _block_sizes(4096, 768, interpreted=False)
        options = {"num_warps": num_warps, "enable_fp_fusion": False}
        src = ASTSource(
            fn=_grad_hidden_kernel,
            signature={"ga_ptr": f"*{acc}", "gb_ptr": f"*{acc}", "idx_ptr": "*i64",
                       "w_ptr": f"*{x}", "gha_ptr": f"*{x}", "ghb_ptr": f"*{x}", "N": "i32",
                       "D": "i32", "K": "i32", "BLOCK_N": "constexpr", "BLOCK_D": "constexpr"},
            constexprs={"BLOCK_N": block_n, "BLOCK_D": block_d},
        )
        out[f"grad_hidden_{x}"] = len(triton.compile(src, target=target,
                                                     options=options).asm["ptx"])
        src = ASTSource(
            fn=_piece_kernel,
            signature={"ga_ptr": f"*{acc}", "gb_ptr": f"*{acc}", "rows_ptr": "*i64",
                       "starts_ptr": "*i64", "ends_ptr": "*i64", "ha_ptr": f"*{x}",
                       "hb_ptr": f"*{x}", "part_ptr": f"*{acc}", "part_bias_ptr": f"*{acc}",
                       "D": "i32", "BLOCK_ROWS": "constexpr", "BLOCK_D": "constexpr"},
            constexprs={"BLOCK_ROWS": block_rows, "BLOCK_D": block_d},
        )
        out[f"piece_{x}"] = len(triton.compile(src, target=target, options=options).asm["ptx"])
        src = ASTSource(
            fn=_rule_sum_kernel,
            signature={"part_ptr": f"*{acc}", "part_bias_ptr": f"*{acc}", "first_ptr": "*i64",
                       "count_ptr": "*i64", "gw_ptr": f"*{acc}", "gbias_ptr": f"*{acc}",
                       "D": "i32", "BLOCK_D": "constexpr"},
            constexprs={"BLOCK_D": block_d},
        )
        out[f"rule_sum_{x}"] = len(triton.compile(src, target=target,
                                                  options=options).asm["ptx"])
    return out
