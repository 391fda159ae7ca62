"""Progress display: tqdm bars for long loops (rating, scoring), and the loss on the
transformers Trainers' bars (Rule Adapter, reward model)."""

from __future__ import annotations


def hide_library_bars() -> None:
    """Also hides the bars that transformers, huggingface_hub and datasets draw themselves
    (loading weights, mapping a dataset): `--no-progress` means no bar at all. Their
    environment switches cover a library imported later (and child processes), without the
    cost of importing it now; one already imported is switched off directly."""
    import os
    import sys

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    for module, switch in (("huggingface_hub.utils", "disable_progress_bars"),
                           ("transformers.utils.logging", "disable_progress_bar"),
                           ("datasets.utils.tqdm", "disable_progress_bars")):
        if module in sys.modules:
            getattr(sys.modules[module], switch)()


def bar(total: int, enabled: bool, *, unit: str, desc: str):
    """A tqdm bar; a disabled one (every call does nothing) when progress is off."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=not enabled)


def rating_bar(total_units: int, rules: int, enabled: bool, initial: int = 0):
    """A bar over (pair, side) units, each worth `rules` ratings, that also shows (response,
    rule) ratings per second: the judge's throughput, whatever the unit's size."""
    from tqdm.auto import tqdm

    class RatingBar(tqdm):
        def update(self, n: int = 1):
            shown = super().update(n)
            elapsed = self.format_dict["elapsed"]
            if not self.disable and elapsed > 0:
                self.set_postfix(ratings_per_s=f"{(self.n - initial) * rules / elapsed:.1f}")
            return shown

    return RatingBar(total=total_units, initial=initial, unit="resp", desc="rating",
                     smoothing=0.1, disable=not enabled)


def show_loss_on_bar(trainer, progress: bool, keys: tuple[str, ...] = ("loss",)) -> None:
    """The Trainer prints every log dict (each step at logging_steps=1), which would bury
    its progress bar: show the latest values of `keys` (the loss; GRPO's mean reward too) as
    the bar's postfix instead, or, without a bar, print nothing."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LossOnBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                shown = {key: f"{logs[key]:.4f}" for key in keys if key in logs}
                if shown:
                    self.training_bar.set_postfix(shown, refresh=False)

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if progress:
        trainer.add_callback(LossOnBar())
