"""Direct chats: one model the visitor chose, several turns, thumbs up or down per answer."""
