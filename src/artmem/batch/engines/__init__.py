"""Where a batch job runs: this process (local) or a Ray cluster (ray)."""
