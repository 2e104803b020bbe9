"""One module per DVC stage; each exposes main(...) called by the CLI."""
