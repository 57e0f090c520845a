"""Notifications: webhooks, e-mail and MQTT channels for alarms and notices."""
