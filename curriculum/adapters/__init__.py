"""Effects at the edge: Ray Train, MLflow and file tracking, checkpoints, storage, run lock, pictures, console."""
