"""The secondary site: log cursor, tracking database, scheduler and replication workers."""
