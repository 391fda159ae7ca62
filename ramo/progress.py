"""Progress display: plain bars for long loops, and the loss on the transformers Trainers'
bars (Rule Adapter, reward model)."""

from __future__ import annotations


class NoBar:
    """What a disabled bar is: the calls a loop makes, doing nothing."""

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, enabled: bool, *, unit: str, desc: str, initial: int = 0, **kwargs):
    """A tqdm bar, or a NoBar when progress is off."""
    if not enabled:
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit=unit, desc=desc, **kwargs)


def show_loss_on_bar(trainer, progress: bool) -> None:
    """The Trainer prints every log dict (each step at logging_steps=1), which would bury
    its progress bar: show the latest loss as the bar's postfix instead, or, without a bar,
    print nothing."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LossOnBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                if "loss" in logs:
                    self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if progress:
        trainer.add_callback(LossOnBar())
