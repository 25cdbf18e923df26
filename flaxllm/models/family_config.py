"""What every model family's config shares: building it from a mapping.

Configs arrive as `config.model` sections (ml_collections) or Hugging Face
dicts, with dtypes spelled as names. `resolve_fields` checks the keys against
the family's dataclass fields and turns dtype names into dtypes, with one-line
errors for the user.
"""

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from flaxllm import errors

DTYPES_BY_NAME = {
    'float32': jnp.float32,
    'bfloat16': jnp.bfloat16,
    'float16': jnp.float16,
}
DTYPE_FIELDS = ('dtype', 'param_dtype')


def resolve_fields(
    config_class: type, values: Mapping[str, Any], *, family: str
) -> dict[str, Any]:
  """Checks keys and resolves dtype names of a family config's fields.

  Args:
    config_class: the family's config dataclass.
    values: field values; 'dtype' and 'param_dtype' may be names such as
      'float32' or 'bfloat16'.
    family: the family's name, for error messages ('decoder', ...).

  Returns:
    The fields, ready for `config_class(**fields)`.

  Raises:
    UserInputError: on an unknown key or dtype name.
  """
  fields = dict(values)
  known = {field.name for field in dataclasses.fields(config_class)}
  for key in fields:
    if key not in known:
      raise errors.UserInputError(
          f'unknown {family} model config key {key!r}; known keys:'
          f' {sorted(known)}'
      )
  for key in DTYPE_FIELDS:
    if isinstance(fields.get(key), str):
      if fields[key] not in DTYPES_BY_NAME:
        raise errors.UserInputError(
            f'model.{key}={fields[key]!r} is not one of'
            f' {sorted(DTYPES_BY_NAME)}'
        )
      fields[key] = DTYPES_BY_NAME[fields[key]]
  return fields


class FromDict:
  """Base of the family config dataclasses: `from_dict` with validation.

  A family sets `FAMILY` (its name in error messages), implements
  `validate()`, and may override `normalize_fields` (e.g. to copy a dict).
  """

  FAMILY = 'model'

  @classmethod
  def normalize_fields(cls, fields: dict[str, Any]) -> dict[str, Any]:
    return fields

  @classmethod
  def from_dict(cls, values: Mapping[str, Any], **overrides: Any):
    """Builds and validates a config from a mapping.

    Args:
      values: field values; 'dtype' and 'param_dtype' may be names such as
        'float32' or 'bfloat16'.
      **overrides: field values that take precedence over `values`.

    Returns:
      The validated config.

    Raises:
      UserInputError: on an unknown key, dtype name or invalid value.
    """
    fields = resolve_fields(cls, {**values, **overrides}, family=cls.FAMILY)
    config = cls(**cls.normalize_fields(fields))
    config.validate()
    return config
