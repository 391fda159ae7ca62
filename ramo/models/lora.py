"""LoRA through peft, for training a large backbone on one device (`ramo rm train --lora R`,
`ramo adapter train --lora R`).

Low-rank adapters go on every linear layer of the backbone (peft's "all-linear", which leaves
the output head out); the new head itself (a sequence classifier's score or classifier
layer, a rule-head model's heads) trains in full. Before saving, the adapters are merged
into the weights (`merge_lora`), so the folder is an ordinary model that `from_pretrained`
loads without peft, in the same format as a fully fine-tuned one.
"""

from __future__ import annotations

from ramo.checks import optional_positive_integer


def check_rank(rank) -> None:
    """None (no LoRA) or a positive integer rank."""
    optional_positive_integer("lora", rank)


def add_lora(model, rank: int, *, classifier: bool):
    """`model` with LoRA adapters of this rank (alpha = 2 x rank, no dropout) on its linear
    layers, everything else frozen. classifier: a transformers sequence classifier, whose
    head peft then trains in full (task SEQ_CLS); otherwise a bare backbone."""
    check_rank(rank)
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise ImportError("lora needs peft: pip install 'ramo[lora]'") from exc
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        target_modules="all-linear",
                        task_type=TaskType.SEQ_CLS if classifier else None)
    return get_peft_model(model, config)


def merge_lora(model):
    """The plain model with the trained adapters merged into its weights."""
    return model.merge_and_unload()


def trainable_parameters(model) -> int:
    """How many parameters training updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
