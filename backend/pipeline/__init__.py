"""Pipeline stages, one module each: ingest, reconstruct, export (more in later issues)."""
