"""flaxllm's absltest suites, run by pytest from ./run.sh test."""
