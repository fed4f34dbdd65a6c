"""geo-sync: geo-replication of CI data."""
