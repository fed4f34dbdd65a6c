"""The tracking database: its schema, its state machines, and the only SQL that moves
a row from one state to another. Core layer: imports nothing above geo_sync.db."""
