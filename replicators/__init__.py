"""One replicator per data type."""
