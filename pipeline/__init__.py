"""leadprop pipeline: everything that touches the outside world (CLI, IO, params, MLflow)."""
