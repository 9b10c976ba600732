"""Retrieval tasks: load → chunk → embed → idempotent upsert, search, and cited answers."""
