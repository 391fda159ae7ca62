"""The Rule Adapter: predicts each pair's k rules from its text, so that the
judge rates k rules per side instead of all R.

  model.py    RuleAdapter (load, logits, top-k prediction) and the pair's text
  train.py    train_adapter and `ramo adapter train`
  apply.py    apply_adapter and `ramo adapter apply`: rate the k rules, label the pair
  evaluate.py the adapter-evaluate step: the metrics on pairs it was not trained on
  metrics.py  agreement of the adapter's rules with the full selection, against random rules
"""

from ramo.adapter.apply import AppliedSelections, apply_adapter
from ramo.adapter.metrics import adapter_metrics, metrics_markdown
from ramo.adapter.model import RuleAdapter, encode_pairs, pair_texts
from ramo.adapter.train import train_adapter

__all__ = ["AppliedSelections", "RuleAdapter", "adapter_metrics", "apply_adapter",
           "encode_pairs", "metrics_markdown", "pair_texts", "train_adapter"]
