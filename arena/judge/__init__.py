"""The LLM judge: labels each voted battle's first prompt for the judged categories."""
