"""Test setup: without a CUDA device, Triton kernels run on the CPU through its interpreter.

TRITON_INTERPRET must be set before triton is first imported, which is why it is set here.
Tests that need a CUDA device are marked `cuda` and skip, with a reason, where there is none.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
