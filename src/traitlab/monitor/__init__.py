"""Monitoring with persona vectors: projections of activations, streaming per-token projections,
finetune-shift, and training-data screening (Chen et al. 2025, §4–§6)."""

from traitlab.monitor.projection import ProjectionStream, conversation_batch, project_conversations
from traitlab.monitor.screening import auroc, screen
from traitlab.monitor.shift import finetune_shift, last_prompt_means

__all__ = ["ProjectionStream", "auroc", "conversation_batch", "finetune_shift", "last_prompt_means",
           "project_conversations", "screen"]
