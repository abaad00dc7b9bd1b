"""Pure logic of the service: validated config and presets, overrides, the scheduler, task streams,
the train state and the run's outcome. Values in, values out: no Ray, no MLflow, no files."""
