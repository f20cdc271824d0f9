"""Backends behind :mod:`longvid.storage`: one module per kind of URI (local, S3, HTTP) plus the
stream helpers they share. Call :mod:`longvid.storage`, not these modules."""
