"""Causal language models and their residual-stream activations.

    from finsae.lm import load_lm, encode_texts
    lm = load_lm("smollm2-135m")                 # short name, HF id, folder or .gguf file
    store = encode_texts(lm, texts, layers=[15]) # cached, resumable
    store.tokens(15), store.doc_index, store.text_means(15)

Convention: layer / block i means the output of decoder block i, which is
``hidden_states[i + 1]`` of a transformers forward with ``output_hidden_states=True``.
"""

from .capture import (CaptureConfig, cache_key, capture_blocks, encode_texts, pack_tokens,
                      tokenize)
from .defaults import DEFAULT_LAYER, DEFAULT_MODEL
from .hooks import block, decoder_layers, forward_from
from .load import KNOWN_MODELS, LM, fingerprint, load_lm
from .store import ActivationStore, EncodeStats
from .tokens import model_inputs

__all__ = ["ActivationStore", "CaptureConfig", "DEFAULT_LAYER", "DEFAULT_MODEL", "EncodeStats", "KNOWN_MODELS",
           "LM", "block", "cache_key", "capture_blocks", "decoder_layers", "encode_texts",
           "fingerprint", "forward_from", "load_lm", "model_inputs", "pack_tokens", "tokenize"]
