"""The audit trail: security events, stored per organization and written to the log."""
