"""Images attached to prompts: checked and re-encoded (decoding.py), stored once by content hash
(store.py), sent upstream as content parts (content.py), and served only where battle
conversations are released (routes.py)."""
