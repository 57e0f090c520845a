"""Who may do what: API keys and dashboard sessions."""
