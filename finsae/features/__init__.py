"""Company vectors: SAE-latent features and the text baselines (TF-IDF, MiniLM embeddings)."""

from .baselines import minilm_embeddings, tfidf_vectors

__all__ = ["minilm_embeddings", "tfidf_vectors"]
