"""Test session set-up: 8 fake CPU devices, no accelerator, no network.

Set before jax is imported anywhere, so every test module sees 8 devices;
subprocess tests choose their own count through XLA_FLAGS.
"""

import os
import sys

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '')
    + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)  # `configs` and `tests.run_helpers` import from here


# Test modules whose tests are independent and heavy (one training step per
# config each): pytest-xdist hands these out one test at a time. Every other
# module stays whole on one worker, so its class fixtures are built once.
SPREAD_MODULES = ('configs_test',)


def pytest_collection_modifyitems(items):
  import pytest  # pylint: disable=g-import-not-at-top

  for item in items:
    module = item.module.__name__.rsplit('.', 1)[-1]
    if module not in SPREAD_MODULES:
      item.add_marker(pytest.mark.xdist_group(module))
