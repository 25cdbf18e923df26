"""Biomedical entity linking: GenBioEL's name trie, targets, KB-guided data.

trie            prefix trie over the tokenized KB names, on the host and as
                a static device table a jitted beam search can step
synonyms        synonyms-aware target choice (character 3-gram TF-IDF)
kb_pretraining  KB-guided pre-training samples from names and definitions
partial_kb      partial-KB evaluation: NIL-aware gold, thresholding,
                post-pruning, P/R/F1 and Recall@k
dense_retrieval the all-MiniLM-L6-v2 retrieval baseline: name index, cosine
                top-k, in-batch-negative fine-tuning, partial-KB hooks
"""
