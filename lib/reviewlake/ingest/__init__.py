"""The ingest stage: raw review TSV -> Parquet lake partitioned by product_category."""
from .job import IngestOptions, read_quarantine, run_ingest

__all__ = ["IngestOptions", "read_quarantine", "run_ingest"]
