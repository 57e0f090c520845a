"""The facility-manager dashboard: templates, static files, labels in Chinese and English, sessions."""
