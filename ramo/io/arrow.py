"""pyarrow, the optional dependency that only Parquet and Arrow files need: one import, with
one message, for every reader and writer of them."""

from __future__ import annotations


def import_pyarrow(purpose: str):
    """The pyarrow module with its parquet and ipc modules loaded; ImportError saying that
    `purpose` needs it otherwise."""
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{purpose} needs pyarrow: pip install pyarrow") from exc
    return pyarrow
