"""Sparse autoencoders: architectures, fast training, the standard metrics, SAELens- and
sparsify-compatible files.

    from finsae.sae import SAEConfig, TrainConfig, train_sae, load_sae, evaluate_reconstruction
    res = train_sae("acts.safetensors", SAEConfig(d_in=576, d_sae=4608, k=32),
                    TrainConfig(tokens=2_000_000), out="runs/sae15")
    sae = load_sae("runs/sae15")          # finsae, SAELens or sparsify folder
    z = sae.encode(x)                     # [tokens, d_sae] latent activations of raw x
"""

from .architectures import (REGISTRY, BatchTopKSAE, ForwardOutput, JumpReLUSAE, ReLUSAE,
                            SparseAutoencoder, TopKSAE, build_sae)
from .config import ARCHS, SAEConfig, TrainConfig, default_lr
from .io import (detect_layout, find_sae, load_sae, sae_block, save_gemmascope, save_saelens,
                 save_sae, save_sparsify)
from .kernels import EncoderOutput
from .metrics import (ReconStats, ce_loss_score, evaluate_reconstruction, find_block, fvu,
                      massive_token_mask, splice_metrics, splice_metrics_on_texts)
from .train import (Batches, TrainResult, geometric_median, load_activations,
                    stream_activations, train_sae)

__all__ = [
    "ARCHS", "REGISTRY", "BatchTopKSAE", "Batches", "EncoderOutput", "ForwardOutput",
    "JumpReLUSAE", "ReLUSAE", "ReconStats", "SAEConfig", "SparseAutoencoder", "TopKSAE",
    "TrainConfig", "TrainResult", "build_sae", "ce_loss_score", "default_lr", "detect_layout",
    "evaluate_reconstruction", "find_block", "find_sae", "fvu", "geometric_median",
    "load_activations", "load_sae", "massive_token_mask", "sae_block", "save_gemmascope",
    "save_sae", "save_saelens", "save_sparsify",
    "splice_metrics", "splice_metrics_on_texts", "stream_activations", "train_sae",
]
