"""finsae: quantitative finance on sparse-autoencoder features of language models."""

__version__ = "0.1.0"
