"""HRM: the Hierarchical Reasoning Model, its losses, batched path metrics and optimizer (torch only)."""
