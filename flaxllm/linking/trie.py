"""GenBioEL's prefix trie over the tokenized names of a knowledge base.

Decoding is constrained to KB names. Each name of each concept becomes the
sequence

    [root] + tokens(' ' + name) + [eos]

(GenBioEL: `[16] + bpe(' ' + name.lower())[1:]`, 16 being BART's ' is').
The root is the last token of the decoder prompt ' <mention> is', i.e. the
last token of ' is' (`root_token`); without a prompt it is the decoder start
token (eos, 2 for BART). A hypothesis that has generated `g` after the prompt
may continue with `PrefixTrie.allowed_next([root] + g)`; it ends on eos
exactly when `g` spells a whole name.

Two representations:

  * `PrefixTrie`, on the host: nested token -> node maps; `allowed_next` and
    a dense boolean `mask` [batch, vocab] for a batch of prefixes.
  * `DeviceTrie`, static arrays in CSR form (the edges of node n are
    `offsets[n]:offsets[n + 1]` of `edge_tokens` / `edge_targets`, sorted by
    token), so a jitted beam search steps it inside `lax` loops without host
    callbacks: `allowed_mask(trie, nodes)` -> bool [rows, vocab],
    `advance(trie, nodes, tokens)` -> next nodes, `walk` from the start
    node over generated tokens, and `logits_processor` for
    `flaxllm.decoding.beam_search`.

A node with no way on (past eos, or off the trie: node id `DEAD_NODE`) allows
only the fallback token (eos), so every row keeps one finite score.
`NameTrie` ties the trie to names and concept ids (name -> ids, tokens ->
ids).
"""

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm.errors import UserInputError

DEAD_NODE = -1  # The node id of a prefix that left the trie.
PROMPT_SUFFIX = ' is'  # The decoder prompt is ' <mention> is'.


class PrefixTrie:
  """A trie over token id sequences, on the host.

  Node 0 is the empty prefix; nodes are numbered in insertion order.
  """

  def __init__(self, sequences: Iterable[Sequence[int]]):
    """Builds the trie.

    Args:
      sequences: the token id sequences (e.g. `NameTrie` sequences).
    """
    self._children: list[dict[int, int]] = [{}]
    self._ends: set[int] = set()
    for sequence in sequences:
      node = 0
      for token in sequence:
        token = int(token)
        child = self._children[node].get(token)
        if child is None:
          child = len(self._children)
          self._children[node][token] = child
          self._children.append({})
        node = child
      self._ends.add(node)

  @property
  def num_nodes(self) -> int:
    return len(self._children)

  @property
  def num_edges(self) -> int:
    return self.num_nodes - 1

  @property
  def num_sequences(self) -> int:
    """The number of distinct sequences."""
    return len(self._ends)

  def node_of(self, prefix: Sequence[int]) -> int | None:
    """The node a prefix reaches, or None when it leaves the trie."""
    node = 0
    for token in prefix:
      node = self._children[node].get(int(token))
      if node is None:
        return None
    return node

  def allowed_next(self, prefix_ids: Sequence[int]) -> list[int]:
    """The tokens that may follow a prefix, ascending.

    Args:
      prefix_ids: tokens from the trie's start (for a `NameTrie`, the root
        token followed by the generated tokens).

    Returns:
      The allowed next tokens; [] off the trie or after a complete sequence.
    """
    node = self.node_of(prefix_ids)
    return [] if node is None else sorted(self._children[node])

  def __contains__(self, sequence: Sequence[int]) -> bool:
    """Whether `sequence` is one of the sequences (not just a prefix)."""
    return self.node_of(sequence) in self._ends

  def mask(
      self, prefixes: Sequence[Sequence[int]], vocab_size: int, fallback_id: int
  ) -> np.ndarray:
    """Dense allowed-token masks for a batch of prefixes.

    Args:
      prefixes: one token list per row, from the trie's start.
      vocab_size: the mask width.
      fallback_id: the only token allowed where nothing else is (eos).

    Returns:
      bool [batch, vocab_size], True where a token may come next.
    """
    masks = np.zeros((len(prefixes), vocab_size), np.bool_)
    for row, prefix in enumerate(prefixes):
      allowed = self.allowed_next(prefix)
      masks[row, allowed if allowed else [fallback_id]] = True
    return masks

  def to_device(
      self,
      vocab_size: int,
      fallback_id: int,
      start_prefix: Sequence[int] = (),
  ) -> 'DeviceTrie':
    """The static device representation of this trie.

    Args:
      vocab_size: the model's vocabulary size; every token must be below.
      fallback_id: the token allowed at nodes with no children (eos).
      start_prefix: the prefix whose node decoding starts from (for a
        `NameTrie`, the root token).

    Returns:
      A DeviceTrie holding device arrays.

    Raises:
      UserInputError: a token outside the vocabulary, or a start prefix not
        in the trie.
    """
    start_node = self.node_of(start_prefix)
    if start_node is None:
      raise UserInputError(
          f'the trie start prefix {list(start_prefix)} is not in the trie;'
          ' build the trie with that root'
      )
    degrees = np.array([len(children) for children in self._children])
    offsets = np.zeros(self.num_nodes + 1, np.int64)
    np.cumsum(degrees, out=offsets[1:])
    edge_tokens = np.zeros(max(self.num_edges, 1), np.int32)
    edge_targets = np.zeros(max(self.num_edges, 1), np.int32)
    for node, children in enumerate(self._children):
      items = sorted(children.items())
      begin = offsets[node]
      edge_tokens[begin : begin + len(items)] = [token for token, _ in items]
      edge_targets[begin : begin + len(items)] = [child for _, child in items]
    if self.num_edges and int(edge_tokens.max()) >= vocab_size:
      raise UserInputError(
          f'the trie holds token {int(edge_tokens.max())} but the vocabulary'
          f" has {vocab_size} ids; build it with the model's tokenizer"
      )
    if offsets[-1] >= 2**31:
      raise UserInputError('the trie has over 2**31 edges; use a smaller KB')
    return DeviceTrie(
        offsets=jnp.asarray(offsets, jnp.int32),
        edge_tokens=jnp.asarray(edge_tokens),
        edge_targets=jnp.asarray(edge_targets),
        start_node=start_node,
        vocab_size=vocab_size,
        fallback_id=fallback_id,
        max_degree=max(int(degrees.max()), 1),
    )


@struct.dataclass
class DeviceTrie:
  """A PrefixTrie as static arrays (a pytree: pass it into jitted code).

  Attributes:
    offsets: node n's edges are [offsets[n], offsets[n + 1]).  # [nodes + 1]
    edge_tokens: the token of each edge, ascending per node.  # [edges]
    edge_targets: the node each edge leads to.  # [edges]
    start_node: the node decoding starts from (static).
    vocab_size: the mask width (static).
    fallback_id: the token allowed where nothing else is (static).
    max_degree: the most edges of one node (static).
  """

  offsets: jax.Array
  edge_tokens: jax.Array
  edge_targets: jax.Array
  start_node: int = struct.field(pytree_node=False)
  vocab_size: int = struct.field(pytree_node=False)
  fallback_id: int = struct.field(pytree_node=False)
  max_degree: int = struct.field(pytree_node=False)


def start_nodes(trie: DeviceTrie, rows: int) -> jax.Array:
  """int32 [rows], every row at the start node."""
  return jnp.full((rows,), trie.start_node, jnp.int32)


def _edge_range(trie: DeviceTrie, nodes: jax.Array):
  """(first edge, edge count) of each node; dead nodes have no edges."""
  safe = jnp.maximum(nodes, 0)
  begin = trie.offsets[safe]  # [rows]
  count = jnp.where(nodes < 0, 0, trie.offsets[safe + 1] - begin)  # [rows]
  return begin, count


def allowed_mask(trie: DeviceTrie, nodes: jax.Array) -> jax.Array:
  """The tokens each node may be followed by.

  Args:
    trie: the device trie.
    nodes: int32 [rows], node ids (`DEAD_NODE` for a prefix off the trie).

  Returns:
    bool [rows, vocab_size]; a node without edges allows only the fallback.
  """
  begin, count = _edge_range(trie, nodes)
  slots = jnp.arange(trie.max_degree)  # [max_degree]
  edges = jnp.minimum(
      begin[:, None] + slots, trie.edge_tokens.shape[0] - 1
  )  # [rows, max_degree]
  tokens = jnp.where(
      slots < count[:, None], trie.edge_tokens[edges], trie.vocab_size
  )  # [rows, max_degree]; out-of-range slots are dropped by the scatter.
  rows = jnp.arange(nodes.shape[0])[:, None]
  mask = (
      jnp.zeros((nodes.shape[0], trie.vocab_size), jnp.bool_)
      .at[rows, tokens]
      .set(True, mode='drop')
  )  # [rows, vocab]
  is_fallback = jnp.arange(trie.vocab_size) == trie.fallback_id
  return mask | (is_fallback & (count == 0)[:, None])


def advance(trie: DeviceTrie, nodes: jax.Array, tokens: jax.Array) -> jax.Array:
  """The nodes reached by one token each (binary search among the edges).

  Args:
    trie: the device trie.
    nodes: int32 [rows], current nodes.
    tokens: int32 [rows], the chosen tokens.

  Returns:
    int32 [rows], the children, or `DEAD_NODE` where the token is not an
    edge of the node (or the node is dead).
  """
  begin, count = _edge_range(trie, nodes)
  low, high = begin, begin + count  # Search [low, high) for the token.
  last_edge = trie.edge_tokens.shape[0] - 1
  for _ in range(int(np.ceil(np.log2(trie.max_degree + 1)))):
    middle = (low + high) // 2
    below = trie.edge_tokens[jnp.minimum(middle, last_edge)] < tokens
    searching = low < high
    low = jnp.where(searching & below, middle + 1, low)
    high = jnp.where(searching & ~below, middle, high)
  found_edge = jnp.minimum(low, last_edge)
  found = (low < begin + count) & (trie.edge_tokens[found_edge] == tokens)
  return jnp.where(found, trie.edge_targets[found_edge], DEAD_NODE).astype(
      jnp.int32
  )


def walk(trie: DeviceTrie, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
  """The nodes reached from the start node by each row's first tokens.

  Args:
    trie: the device trie.
    tokens: int32 [rows, max_length], generated tokens.
    lengths: int32 scalar or [rows], how many tokens of each row to follow.

  Returns:
    int32 [rows] node ids (`DEAD_NODE` where a row left the trie).
  """
  rows = tokens.shape[0]
  lengths = jnp.broadcast_to(jnp.asarray(lengths, jnp.int32), (rows,))

  def follow(position, nodes):
    moved = advance(trie, nodes, tokens[:, position])
    return jnp.where(position < lengths, moved, nodes)

  return jax.lax.fori_loop(0, jnp.max(lengths), follow, start_nodes(trie, rows))


def logits_processor(
    trie: DeviceTrie,
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
  """A `flaxllm.decoding.processors` logits processor for a name trie.

  It expects the decoder prompt to be prefilled (the search starts right
  after the root token) and re-walks the generated tokens at every step, so
  it needs no state of its own.

  Args:
    trie: the device trie (its start node is the root). Build the
      processor inside the jitted function from a trie passed in as an
      argument, so its arrays are inputs rather than baked-in constants.

  Returns:
    processor(logits [rows, vocab], tokens [rows, max_length], step) ->
    logits with the tokens off the trie set to -inf.
  """

  def processor(logits, tokens, step):
    mask = allowed_mask(trie, walk(trie, tokens, step))
    return jnp.where(mask, logits, -jnp.inf)

  return processor


# ----------------------------------------------------------------------------
# Names, prompts and concept ids.
# ----------------------------------------------------------------------------


def prompt_ids(tokenizer: Any, mention: str) -> list[int]:
  """The decoder prompt ' <mention> is' (without the decoder start token)."""
  return tokenizer.encode(f' {mention}{PROMPT_SUFFIX}')


def name_ids(tokenizer: Any, name: str) -> list[int]:
  """A name as the decoder emits it: tokens(' ' + name) + [eos]."""
  return tokenizer.encode(f' {name}') + [tokenizer.eos_id]


def root_token(tokenizer: Any, prompted: bool = True) -> int:
  """The trie root: the prompt's last token, else the decoder start (eos).

  Byte-level BPE tokenizes ' is' on its own after any mention, so the last
  token of ' <mention> is' is always the last token of ' is'.
  """
  return tokenizer.encode(PROMPT_SUFFIX)[-1] if prompted else tokenizer.eos_id


@dataclasses.dataclass(frozen=True)
class NameTrie:
  """A prefix trie over every name of a KB, with the way back to concepts.

  Attributes:
    trie: sequences [root] + name_ids(name), one per distinct name.
    root_id: the root token.
    eos_id: the token ending every name.
    name_to_ids: normalized name -> concept ids.
    sequence_to_ids: name_ids(name) as a tuple -> concept ids.
  """

  trie: PrefixTrie
  root_id: int
  eos_id: int
  name_to_ids: Mapping[str, tuple[str, ...]]
  sequence_to_ids: Mapping[tuple[int, ...], tuple[str, ...]]

  @property
  def max_name_tokens(self) -> int:
    """The longest name in tokens, eos included: the decode length needed."""
    return max(map(len, self.sequence_to_ids))

  def allowed_next(self, generated: Sequence[int]) -> list[int]:
    """Tokens allowed after the root and the tokens generated so far."""
    return self.trie.allowed_next([self.root_id, *generated])

  def mask(self, generated: Sequence[Sequence[int]], vocab_size: int):
    """bool [batch, vocab_size] masks for each row's generated tokens."""
    return self.trie.mask(
        [[self.root_id, *row] for row in generated], vocab_size, self.eos_id
    )

  def to_device(self, vocab_size: int) -> DeviceTrie:
    """The device table, starting at the root, falling back to eos."""
    return self.trie.to_device(
        vocab_size, self.eos_id, start_prefix=(self.root_id,)
    )

  def concepts_of(
      self, generated: Sequence[int], tokenizer: Any = None
  ) -> tuple[str, ...]:
    """The concept ids a generated name stands for.

    Args:
      generated: the tokens after the prompt, read up to the first eos;
        without an eos the name is unfinished and only the text fallback
        can find it.
      tokenizer: when given, a sequence that is not a whole trie name is
        decoded, stripped and looked up as text (GenBioEL's way back).

    Returns:
      The ids (one name may belong to several concepts); () for no name.
    """
    tokens = [int(token) for token in np.asarray(generated).reshape(-1)]
    found = None
    if self.eos_id in tokens:
      tokens = tokens[: tokens.index(self.eos_id)]
      found = self.sequence_to_ids.get((*tokens, self.eos_id))
    if found is None and tokenizer is not None:
      found = self.name_to_ids.get(tokenizer.decode(tokens).strip())
    return found or ()


def build_name_trie(
    name_to_ids: Mapping[str, Sequence[str]],
    tokenizer: Any,
    *,
    prompted: bool = True,
) -> NameTrie:
  """The trie of every name, e.g. `KnowledgeBase.name_to_ids()`.

  Args:
    name_to_ids: name (already normalized) -> the ids of its concepts.
    tokenizer: has `encode(text)`, `encode_batch(texts)` and `eos_id`.
    prompted: root the trie at the prompt's last token (' is'); otherwise at
      the decoder start token (eos).

  Returns:
    The NameTrie.

  Raises:
    UserInputError: no names.
  """
  names = [name for name in name_to_ids if name]
  if not names:
    raise UserInputError('the knowledge base has no names to build a trie of')
  root_id = root_token(tokenizer, prompted)
  encoded = tokenizer.encode_batch([f' {name}' for name in names])
  sequence_to_ids = {}
  for name, ids in zip(names, encoded):
    key = (*ids, tokenizer.eos_id)
    sequence_to_ids[key] = tuple(
        dict.fromkeys((*sequence_to_ids.get(key, ()), *name_to_ids[name]))
    )
  trie = PrefixTrie([root_id, *sequence] for sequence in sequence_to_ids)
  return NameTrie(
      trie=trie,
      root_id=root_id,
      eos_id=tokenizer.eos_id,
      name_to_ids={name: tuple(name_to_ids[name]) for name in names},
      sequence_to_ids=sequence_to_ids,
  )
