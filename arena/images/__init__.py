"""Images attached to prompts: checked and re-encoded (decoding.py), stored once by content hash
(store.py), and served only where conversations are released (routes.py)."""
