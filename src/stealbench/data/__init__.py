"""Data: builders of the embedded default, real datasets, and the one Parquet layout."""
