"""The PostgreSQL database's own tools: the views-equal-a-replay check and verified backups."""
