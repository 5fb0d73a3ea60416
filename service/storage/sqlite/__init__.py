"""Whole-file tools for the SQLite database: online backups and the views-against-replay check."""
