"""The operator's console at /admin: the admin API's actions as pages and forms."""
