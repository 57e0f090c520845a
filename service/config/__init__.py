"""Configuration: the site file and its schema, settings, credentials, the working calendar, office rules per
room, static compliance, the broker's accounts.
"""
