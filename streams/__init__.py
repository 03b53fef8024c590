"""streams: faust workers that clean, pseudonymize, dedupe, chunk, embed and index records."""
