"""Ingest commits its runs with the shared staged-commit protocol of :mod:`reviewlake.commit`
(kept here so ``reviewlake.ingest.commit`` still names it)."""
from ..commit import (LOCK, MARKER, PREVIOUS, REPORTS, STAGING, apply_marker,  # noqa: F401
                      clean_stale_staging, commit, lock_output, recover, staging_dir)
