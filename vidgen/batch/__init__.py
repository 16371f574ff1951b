"""Many jobs: manifests, claims and resume (jobs), and the same jobs on a Ray cluster (ray)."""
