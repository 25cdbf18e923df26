"""Decoding library: samplers over a tokens_to_logits callable.

Every sampler sees a model only through `tokens_to_logits(params, ids,
cache) -> (logits, cache)` (see `sampling`); `model_steps` builds it and the
prefill for the LLaMA and BART families.

  sampling      the token-by-token loop: greedy, temperature, top-k, top-p
  greedy        greedy decoding (sampling at temperature 0)
  processors    logits processors (allowed-token masks, min length,
                repetition penalty), top-k/top-p masks, stop sequences
  beam_search   batched beam search with a length penalty
  cache         per-row cache rollback, row repeat/gather
  speculative   draft-and-verify decoding, fixed or adaptive gamma
  contrastive   contrastive decoding and speculative contrastive decoding
  early_exit    an amateur made of a LLaMA target's first layers
"""
