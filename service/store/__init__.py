"""The state store (SQLite or PostgreSQL): alarms and journal, audit, overrides, keys, rollups, energy, hazards,
state.
"""
