"""Tiny language models for the unit tests, built offline: a BPE tokenizer trained on a few
sentences and a random Llama from a config (no download, a few milliseconds)."""

import torch

#: company-like sentences the tiny tokenizers are trained on (the last one is long: it spans
#: several shards and batches)
SENTENCES = [
    "Apple designs and sells smartphones, personal computers and tablets.",
    "Exxon Mobil explores for and produces crude oil and natural gas worldwide.",
    "The bank provides retail and commercial banking services in Ohio.",
    "A semiconductor company designing graphics processors for gaming and data centers.",
    "Regional airline operating scheduled passenger flights.",
    "Oil",
    "The company sells software, cloud services and computers to banks and airlines "
    "in Texas, Ohio and worldwide; it also designs graphics processors for data centers "
    "and produces natural gas.",
]


def bpe_tokenizer(texts, vocab_size: int = 200):
    """A byte-pair tokenizer trained on `texts` (x3), with <pad>, <bos> and <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator(list(texts) * 3, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<unk>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", pad_token="<pad>",
                                   unk_token="<unk>")


def tiny_llama(tokenizer, *, n_layers: int = 2, hidden: int = 64, intermediate: int = 128,
               heads: int = 4, kv_heads: int = 2, max_positions: int | None = 256,
               seed: int = 0):
    """A random Llama for `tokenizer` (weights drawn after ``torch.manual_seed(seed)``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    extra = {} if max_positions is None else {"max_position_embeddings": max_positions}
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                      intermediate_size=intermediate, num_hidden_layers=n_layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads,
                      initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
                      pad_token_id=tokenizer.pad_token_id, **extra)
    return LlamaForCausalLM(cfg)
