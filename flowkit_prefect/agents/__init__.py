"""Agents whose every step is a Prefect task run: tool agents and plan-and-execute."""
