"""On-disk artifacts: atomic files, manifests, checkpoints."""
