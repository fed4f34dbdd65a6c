"""Checksums, verification and drift."""
