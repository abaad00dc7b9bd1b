"""Curriculum service: config, scheduler, task streams, training loop, CLIs, Ray Train and MLflow adapters."""
