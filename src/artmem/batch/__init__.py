"""Batch jobs over collections: scores and features, sharded, resumable, local or on Ray."""
