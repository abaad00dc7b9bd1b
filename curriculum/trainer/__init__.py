"""The training loop: a plain function of (config, worker context, tracker, run directory)."""
