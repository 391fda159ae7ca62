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


@pytest.fixture(autouse=True)
def _library_bars_restored():
    """`--no-progress` switches the libraries' own bars off for the whole process (their
    environment switches and, when imported, their own): an in-process CLI test must not carry
    that into the next test."""
    import sys

    names = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")
    env = {name: os.environ.get(name) for name in names}
    logging = sys.modules.get("transformers.utils.logging")
    enabled = logging.is_progress_bar_enabled() if logging is not None else None
    yield
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    logging = sys.modules.get("transformers.utils.logging")
    if logging is not None and enabled is not False and not logging.is_progress_bar_enabled():
        logging.enable_progress_bar()
