"""The workspace index and `@workspace` retrieval: files chunked along code structure
(`chunker`), walked with `.gitignore` honoured (`walker`), embedded through the engine at BULK
priority and stored per workspace in SQLite (`store`, `index`, `registry`), searched by
embeddings and BM25 fused (`retrieval`), and put into chat prompts (`chat`)."""
