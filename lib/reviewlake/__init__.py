"""reviewlake: product reviews from a data lake to a trained, distributed text classifier.

Stages (each a job reading what the one before wrote): ingest (TSV -> Parquet lake),
quality (Deequ checks as a gate), prepare (balanced splits -> BERT features as TFRecords)
and train (DistilBERT with Horovod).
"""
__version__ = "0.1.0"
