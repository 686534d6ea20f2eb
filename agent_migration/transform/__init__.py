"""The row rules: exact (value by value) and fast (typed Arrow), payloads, users, a table streamed through them."""
