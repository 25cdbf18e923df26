"""User-facing errors: bad configs, bad data, bad meshes.

Anything the user can fix by editing a config or a file raises `UserInputError`
with a one-line message that names the offending thing and the fix. The
launcher (`flaxllm.main`) prints that line alone and exits with status 2,
without a traceback and before touching anything already in the workdir.
"""


class UserInputError(Exception):
  """A problem in the user's config, data or environment, fixable by them."""

  def __init__(self, message: str):
    # Keep it to one line: the launcher prints it as is.
    super().__init__(" ".join(str(message).split()))
