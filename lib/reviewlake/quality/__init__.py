"""The quality stage: Deequ constraints on the lake as a pipeline gate.

A declarative suite (``conf/quality.yaml``: analyzers, checks at level Error or Warning,
anomaly checks, suggestion rules) runs on ``LAKE/reviews`` with one of two engines that write
the same tables: ``deequ`` (PyDeequ on the Deequ jar) or ``spark`` (the same definitions as
Spark SQL aggregates, for machines without the jar). Every run's metrics go to a repository
keyed by time and tags, anomaly checks compare a run with that history, and ``QDIR`` gets the
metrics, check results, suggestions and ``report.html``. An Error-level failure exits 3.
"""
