"""Tiny BERT encoders built from a config and saved to a folder (no hub, no download), for
the tests of everything that takes an encoder backbone: relevance, Rule Adapter, reward model."""

from __future__ import annotations

import string
from pathlib import Path

import torch

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = """the a an to of and or not no yes how do i can you help with that sorry here is are
what why make bomb weapon safe unsafe refuse answer question rule response user assistant
kill process linux python file please never always people private data doctor health""".split()


def _vocab() -> list[str]:
    # Letters and "##"-continuations let WordPiece spell any lowercase word, so texts outside
    # the word list still tokenise to distinct ids (more than [UNK]).
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    return _SPECIAL + sorted(set(_WORDS)) + chars + ["##" + c for c in chars]


def tiny_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(_vocab())}
    return BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)


def tiny_bert_config(**kwargs):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                      **kwargs)


def tiny_encoder_dir(folder: Path, seed: int = 0) -> Path:
    """A folder holding a random BertModel and its tokenizer (AutoModel-loadable)."""
    from transformers import BertModel

    torch.manual_seed(seed)
    tiny_tokenizer(folder).save_pretrained(folder)
    BertModel(tiny_bert_config()).save_pretrained(folder)
    return folder


def tiny_classifier_dir(folder: Path, num_labels: int = 1, seed: int = 0, **config) -> Path:
    """A folder holding a random BertForSequenceClassification and its tokenizer."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    tiny_tokenizer(folder).save_pretrained(folder)
    BertForSequenceClassification(tiny_bert_config(num_labels=num_labels, **config)).save_pretrained(folder)
    return folder
