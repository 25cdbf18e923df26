"""Data layer: sources, the embedded HPO corpus, tokenizers, collators, iterators."""
