"""The dtypes every Triton kernel of ramo shares.

accumulation_dtype restates the rule of ramo/reference/select_rules.py (the spec) because
the kernels sit below ramo and import nothing from it; a test in
python_tests/test_select_rules.py holds the two equal.
"""

from __future__ import annotations

import torch

# The names Triton's kernel signatures use, for the compile checks (triton.compile needs
# the pointer types spelled out, since no tensor is passed).
TRITON_TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32",
                torch.float64: "fp64"}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 inputs accumulate in fp64, every other float dtype in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
