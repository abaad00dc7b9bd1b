"""HRM: the Hierarchical Reasoning Model alone: model, layers, config, optimizer, EMA (torch only)."""
