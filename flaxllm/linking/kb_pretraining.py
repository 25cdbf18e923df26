"""GenBioEL's KB-guided pre-training samples.

Every (concept c, name s) pair of the KB gives one sample whose target is s.
The mention m is another name of c (chosen at random by default), or s
itself when c has a single name. The source marks m with the literal words
START and END inside a template:

  * c has definitions: the context is (up to) two of them, shuffled and
    space-joined, lowercased; the template is one of
    `DEFINITION_TEMPLATES` (uniform): the first two read
    'START m END <template> <definitions>', the other two
    '<definitions> <template> START m END'. Sources longer than
    `MAX_SOURCE_TOKENS` tokens keep their head or tail, whichever holds the
    mention.
  * c has several names but no definition: the context is up to three of
    c's names other than s, shuffled and joined with ', ' (the mention may
    be among them, as in GenBioEL's code); templates `SYNONYM_TEMPLATES`,
    the last two with the mention first.
  * c has one name and no definition: 's is START s END',
    's is the same as START s END', or the same with the mention first.

The decoder reads `[eos] + tokens(' m is') + tokens(' s')` and is trained on
`tokens(' s') + [eos]` only: `decoder_sequences` builds the three arrays,
with the prompt masked out of the loss. The templates' wording, typo
included ('definations'), is GenBioEL's.
"""

import random
from typing import Any, Iterable, Sequence

from flaxllm.data import kb as kb_lib
from flaxllm.errors import UserInputError
from flaxllm.linking import synonyms as synonyms_lib
from flaxllm.linking import trie as trie_lib

DEFINITION_TEMPLATES = (
    'is defined as',
    'is described as',
    'are the definations of',
    'describe',
)
SYNONYM_TEMPLATES = (
    'are the synonyms of',
    'indicate the same concept as',
    'has synonyms, such as',
    'refers to the same concept as',
)
SINGLE_NAME_TEMPLATES = ('is', 'is the same as', 'is', 'is the same as')
MAX_SOURCE_TOKENS = 700
MAX_DEFINITIONS = 2
MAX_CONTEXT_NAMES = 3


def _compose(mention: str, context: str, template: str, mention_first: bool):
  marked = f'START {mention} END'
  if mention_first:
    return f'{marked} {template} {context}'
  return f'{context} {template} {marked}'


def _truncate(source: str, tokenizer: Any, limit: int, keep_head: bool):
  """The source cut to `limit` tokens at the end away from the mention."""
  ids = tokenizer.encode(source)
  if len(ids) <= limit:
    return source
  return tokenizer.decode(ids[:limit] if keep_head else ids[-limit:])


def concept_samples(
    concept_id: str,
    names: Sequence[str],
    definitions: Sequence[str],
    rng: random.Random,
    *,
    tokenizer: Any = None,
    max_source_tokens: int = MAX_SOURCE_TOKENS,
    mention_strategy: str = 'random',
    selector: synonyms_lib.SynonymSelector | None = None,
) -> list[dict]:
  """The samples of one concept, one per name.

  Args:
    concept_id: the concept's id.
    names: its distinct normalized names.
    definitions: its definitions (lowercased here).
    rng: the randomness (mention, template, shuffles).
    tokenizer: when given, sources over `max_source_tokens` are truncated.
    max_source_tokens: the source budget in tokens.
    mention_strategy: how the mention is picked among the other names (see
      `synonyms.TARGET_STRATEGIES`; 'random' in GenBioEL).
    selector: the similarity for the non-random strategies.

  Returns:
    Dicts with 'src', 'mention', 'prefix' ('<mention> is'), 'tgt' (the
    name) and 'id'.
  """
  definitions = [text.lower().strip() for text in definitions if text.strip()]
  samples = []
  for target in names:
    others = [name for name in names if name != target]
    if others:
      if mention_strategy == 'random':
        mention = rng.choice(others)
      else:
        if selector is None:
          raise UserInputError(
              f'mention_strategy={mention_strategy!r} needs a SynonymSelector'
          )
        mention = selector.choose(
            target, others, strategy=mention_strategy, rng=rng
        )
    else:
      mention = target
    if definitions:
      chosen = rng.sample(definitions, len(definitions))[:MAX_DEFINITIONS]
      template_index = rng.randint(0, len(DEFINITION_TEMPLATES) - 1)
      mention_first = template_index < 2
      source = _compose(
          mention,
          ' '.join(chosen),
          DEFINITION_TEMPLATES[template_index],
          mention_first,
      )
      if tokenizer is not None:
        source = _truncate(source, tokenizer, max_source_tokens, mention_first)
    elif others:
      context = rng.sample(others, len(others))[:MAX_CONTEXT_NAMES]
      template_index = rng.randint(0, len(SYNONYM_TEMPLATES) - 1)
      source = _compose(
          mention,
          ', '.join(context),
          SYNONYM_TEMPLATES[template_index],
          template_index > 1,
      )
    else:
      template_index = rng.randint(0, len(SINGLE_NAME_TEMPLATES) - 1)
      source = _compose(
          mention,
          target,
          SINGLE_NAME_TEMPLATES[template_index],
          template_index > 1,
      )
    samples.append({
        'src': source,
        'mention': mention,
        'prefix': f'{mention} is',
        'tgt': target,
        'id': concept_id,
    })
  return samples


def pretraining_samples(
    kb: kb_lib.KnowledgeBase,
    *,
    seed: int = 0,
    concept_ids: Iterable[str] | None = None,
    tokenizer: Any = None,
    max_source_tokens: int = MAX_SOURCE_TOKENS,
    mention_strategy: str = 'random',
    selector: synonyms_lib.SynonymSelector | None = None,
) -> list[dict]:
  """KB-guided pre-training samples of a KB, shuffled.

  Args:
    kb: the knowledge base.
    seed: the randomness; the same seed gives the same samples.
    concept_ids: only these concepts (e.g. a split); None for all.
    tokenizer: when given, over-long sources are truncated.
    max_source_tokens: the source budget in tokens.
    mention_strategy: see `concept_samples`.
    selector: see `concept_samples`.

  Returns:
    One sample per (concept, normalized name), in a seeded random order.
  """
  rng = random.Random(seed)
  samples = []
  for concept_id in kb.ids() if concept_ids is None else concept_ids:
    samples.extend(
        concept_samples(
            concept_id,
            kb.names(concept_id),
            kb[concept_id].definitions,
            rng,
            tokenizer=tokenizer,
            max_source_tokens=max_source_tokens,
            mention_strategy=mention_strategy,
            selector=selector,
        )
    )
  rng.shuffle(samples)
  return samples


def decoder_sequences(
    tokenizer: Any,
    mention: str,
    target: str,
    decoder_start_id: int | None = None,
) -> dict[str, list]:
  """The decoder side of a GenBioEL sample, prompt masked out of the loss.

  Args:
    tokenizer: has `encode(text)` and `eos_id`.
    mention: the mention of the prompt ' <mention> is'.
    target: the KB name to emit.
    decoder_start_id: the first decoder input; None for eos (BART).

  Returns:
    decoder_inputs: [start] + prompt + name.  # [prompt + name + 1]
    targets: prompt + name + [eos].  # [prompt + name + 1]
    target_mask: 0.0 on the prompt, 1.0 on name and eos.
  """
  prompt = trie_lib.prompt_ids(tokenizer, mention)
  name = trie_lib.name_ids(tokenizer, target)  # Ends with eos.
  start = tokenizer.eos_id if decoder_start_id is None else decoder_start_id
  return {
      'decoder_inputs': [start, *prompt, *name[:-1]],
      'targets': [*prompt, *name],
      'target_mask': [0.0] * len(prompt) + [1.0] * len(name),
  }
