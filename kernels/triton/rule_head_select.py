"""Triton backend of rule_head_select's sparse backward (ramo/reference/rule_head_select.py is
the spec; the forward is two torch.addmm and the Triton select_rules kernel, see
ramo/ops/rule_head_select.py).

One program per (block of BLOCK_N rows, block of BLOCK_D columns). For each of the k selected
rules j of its rows it gathers the weight rows weight[idx[n, j], cols] into a running sum, and
adds term[n, cols] = g_a[n] * hidden_a[n, cols] + g_b[n] * hidden_b[n, cols] to
grad_weight[idx[n, j], cols] (and g_a[n] + g_b[n] to grad_bias[idx[n, j]], by the programs of
the first column block) with atomic adds in fp32 (fp64 for fp64): several rows of a launch
select the same rule. Atomic adds make grad_weight and grad_bias not bitwise reproducible
from run to run (the CPU backend is). At the end grad_hidden_x = g_x * sum. Padding
(index -1) is skipped.

Rounding: every launch passes ``enable_fp_fusion=False``, like select_rules.
This module imports nothing from ``ramo`` beyond this package (ramo.triton_kernels).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dtypes import TRITON_TYPES, accumulation_dtype


@triton.jit
def _rule_head_backward_kernel(ga_ptr, gb_ptr, idx_ptr, ha_ptr, hb_ptr, w_ptr, gha_ptr, ghb_ptr,
                               gw_ptr, gbias_ptr, N, D, K, BLOCK_N: tl.constexpr,
                               BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    rows64 = rows.to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_mask = cols < D
    inb = row_mask[:, None] & col_mask[None, :]
    # Only the first column block adds to grad_bias (a [BLOCK_N] mask: the interpreter takes
    # no scalar one).
    first_cols = (tl.zeros([BLOCK_N], tl.int32) + tl.program_id(1)) == 0

    ga = tl.load(ga_ptr + rows64, mask=row_mask, other=0.0)
    gb = tl.load(gb_ptr + rows64, mask=row_mask, other=0.0)
    offs = rows64[:, None] * D + cols[None, :]
    # Narrow float types are upcast at once (the interpreter's bf16 arithmetic is not exact).
    ha = tl.load(ha_ptr + offs, mask=inb, other=0.0).to(ga.dtype)
    hb = tl.load(hb_ptr + offs, mask=inb, other=0.0).to(ga.dtype)
    term = ga[:, None] * ha + gb[:, None] * hb
    g_bias = ga + gb

    total = tl.zeros([BLOCK_N, BLOCK_D], ga.dtype)
    for j in range(K):
        rule = tl.load(idx_ptr + rows64 * K + j, mask=row_mask, other=-1)
        sel = row_mask & (rule >= 0)
        rule64 = tl.where(sel, rule, 0).to(tl.int64)
        sel2 = sel[:, None] & col_mask[None, :]
        woffs = rule64[:, None] * D + cols[None, :]
        w = tl.load(w_ptr + woffs, mask=sel2, other=0.0).to(ga.dtype)
        total = total + w
        tl.atomic_add(gw_ptr + woffs, term, mask=sel2, sem="relaxed")
        tl.atomic_add(gbias_ptr + rule64, g_bias, mask=sel & first_cols, sem="relaxed")
    tl.store(gha_ptr + offs, (ga[:, None] * total).to(gha_ptr.dtype.element_ty), mask=inb)
    tl.store(ghb_ptr + offs, (gb[:, None] * total).to(ghb_ptr.dtype.element_ty), mask=inb)


# Tile sizes: the interpreter pays per program instance, so it gets big tiles.
_GPU_BLOCK_N, _GPU_BLOCK_D = 16, 128
_INTERP_TILE = 1 << 16


def _block_sizes(n: int, d: int, interpreted: bool) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_D, num_warps)."""
    if interpreted:
        block_d = min(triton.next_power_of_2(max(d, 1)), 4096)
        block_n = max(1, min(_INTERP_TILE // block_d, triton.next_power_of_2(max(n, 1)), 1024))
        return block_n, block_d, 4
    return _GPU_BLOCK_N, _GPU_BLOCK_D, 4


def rule_head_select_backward(grad_a, grad_b, indices, hidden_a, hidden_b, weight) -> tuple:
    """(grad_hidden_a, grad_hidden_b, grad_weight, grad_bias) of the selected-rules part.

    All inputs contiguous; grad_a, grad_b [N] in the accumulation dtype; indices int64 [N, k]
    in [-1, R)."""
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
    if n > 0 and d > 0:
        block_n, block_d, num_warps = _block_sizes(n, d, interpreted)
        grid = (triton.cdiv(n, block_n), triton.cdiv(d, block_d))
        _rule_head_backward_kernel[grid](
            grad_a.to(acc), grad_b.to(acc), indices, hidden_a, hidden_b, weight, grad_hidden_a,
            grad_hidden_b, grad_weight, grad_bias, n, d, k, BLOCK_N=block_n, BLOCK_D=block_d,
            num_warps=num_warps, enable_fp_fusion=False,
        )
    return (grad_hidden_a.to(hidden_a.dtype), grad_hidden_b.to(hidden_a.dtype),
            grad_weight.to(weight.dtype),
            grad_bias.to(weight.dtype))


# --------------------------------------------------------------------------------------------
# Compile check (no GPU needed)
# --------------------------------------------------------------------------------------------

def compile_check(arch: int = 90) -> dict:
    """Compiles the backward kernel for CUDA sm_<arch> in every dtype (no GPU needed).

    Returns {kernel_dtype: bytes of PTX}."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    out = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        x = TRITON_TYPES[dtype]
        acc = TRITON_TYPES[accumulation_dtype(dtype)]
        block_n, block_d, num_warps = _block_sizes(4096, 768, interpreted=False)
        src = ASTSource(
            fn=_rule_head_backward_kernel,
            signature={"ga_ptr": f"*{acc}", "gb_ptr": f"*{acc}", "idx_ptr": "*i64",
                       "ha_ptr": f"*{x}", "hb_ptr": f"*{x}", "w_ptr": f"*{x}",
                       "gha_ptr": f"*{x}", "ghb_ptr": f"*{x}", "gw_ptr": f"*{acc}",
                       "gbias_ptr": f"*{acc}", "N": "i32", "D": "i32", "K": "i32",
                       "BLOCK_N": "constexpr", "BLOCK_D": "constexpr"},
            constexprs={"BLOCK_N": block_n, "BLOCK_D": block_d},
        )
        compiled = triton.compile(src, target=target,
                                  options={"num_warps": num_warps, "enable_fp_fusion": False})
        out[f"backward_{x}"] = len(compiled.asm["ptx"])
    return out
