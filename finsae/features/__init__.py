"""Company vectors: SAE-latent features and the text baselines (TF-IDF, MiniLM embeddings)."""

from .baselines import minilm_embeddings, tfidf_vectors
from .company import CompanyFeatures, TokenLatents, content_token_mask, pool_latents

__all__ = ["CompanyFeatures", "TokenLatents", "content_token_mask", "minilm_embeddings",
           "pool_latents", "tfidf_vectors"]
