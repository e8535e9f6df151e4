"""Storage engines: metadata (SQLAlchemy: SQLite or PostgreSQL) and blobs (filesystem)."""
