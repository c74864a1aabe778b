"""Decoder-only language models: the architecture record, weights read from GGUF, tokenizer."""
