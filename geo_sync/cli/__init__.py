"""The `geo-sync` command line."""
