"""Decoding library: samplers over a tokens_to_logits callable."""
