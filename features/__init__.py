"""Pure feature logic: DataFrames and typed settings in, feature frames out."""
