"""One module per DVC stage; each exposes `from_params(params, ...)`, called by the CLI, and a
plain `run(...)` with explicit arguments for tests and other callers."""
