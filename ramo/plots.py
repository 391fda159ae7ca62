"""Writing matplotlib figures: one place for the format and the atomic write, shared by the
run report and the studies."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend: ramo's figures are files, and a machine without
    a display must draw them too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """The figure as a PNG at `path`, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    from ramo.io.atomic import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
