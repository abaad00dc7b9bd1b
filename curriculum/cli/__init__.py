"""The commands: run, evaluate, compare, replay (``python -m curriculum.<command>``)."""
