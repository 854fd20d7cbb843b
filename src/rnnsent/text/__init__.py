"""Raw text to token ids: tokenizing, the vocabulary and the encoder."""
