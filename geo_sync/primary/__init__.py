"""The primary site: event log, catalog, publishing and the Geo API."""
