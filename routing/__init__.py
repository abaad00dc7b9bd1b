"""The routing objective between the model and the curriculum: batch tensors, losses with differentiable
penalties, batched path metrics and the ACT training step (torch; reads the task vocabulary from oracle)."""
