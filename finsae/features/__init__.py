"""Company vectors: SAE-latent features and the text baselines."""

from .company import CompanyFeatures, TokenLatents, content_token_mask, pool_latents

__all__ = ["CompanyFeatures", "TokenLatents", "content_token_mask", "pool_latents"]
