"""flaxllm: JAX/Flax reimplementations of nine text-generation methods."""
