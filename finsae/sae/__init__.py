"""Sparse autoencoders: architectures, fast training, the standard metrics, SAELens- and
sparsify-compatible files, Group-SAE layer groups and layer transfer.

    from finsae.sae import SAEConfig, TrainConfig, train_sae, load_sae, evaluate_reconstruction
    res = train_sae("acts.safetensors", SAEConfig(d_in=576, d_sae=4608, k=32),
                    TrainConfig(tokens=2_000_000), out="runs/sae15")
    sae = load_sae("runs/sae15")          # finsae, SAELens or sparsify folder
    z = sae.encode(x)                     # [tokens, d_sae] latent activations of raw x
"""

from ..lm.hooks import block as find_block  # the block finder, under its older name
from .activations import Batches, load_activations, stream_activations
from .architectures import (REGISTRY, BatchTopKSAE, ForwardOutput, JumpReLUSAE, ReLUSAE,
                            SparseAutoencoder, TopKSAE, build_sae)
from .config import ARCHS, SAEConfig, TrainConfig, default_lr
from .convert import save_gemmascope, save_saelens, save_sparsify
from .group_train import group_tokens, train_group_sae, transfer_sae
from .grouping import GroupingResult, amad, choose_groups, cluster_layers, even_groups
from .io import load_sae, save_sae
from .kernels import EncoderOutput
from .layer_distance import AngularDistance, angular_distances, model_layer_distances
from .layouts import detect_layout
from .matryoshka import MatryoshkaBatchTopKSAE
from .metrics import (ReconStats, SpliceEvaluator, ce_loss_score, evaluate_reconstruction, fvu,
                      massive_token_mask, massive_token_mask_any_layer, splice_metrics,
                      splice_metrics_on_texts)
from .release import find_sae, sae_block
from .train import TrainResult, geometric_median, train_sae

__all__ = [
    "ARCHS", "REGISTRY", "AngularDistance", "BatchTopKSAE", "Batches", "EncoderOutput",
    "ForwardOutput", "GroupingResult", "JumpReLUSAE", "MatryoshkaBatchTopKSAE", "ReLUSAE",
    "ReconStats", "SAEConfig", "SparseAutoencoder", "SpliceEvaluator", "TopKSAE", "TrainConfig",
    "TrainResult", "amad", "angular_distances", "build_sae", "ce_loss_score", "choose_groups",
    "cluster_layers", "default_lr", "detect_layout", "evaluate_reconstruction", "even_groups",
    "find_block", "find_sae", "fvu", "geometric_median", "group_tokens", "load_activations",
    "load_sae", "massive_token_mask", "massive_token_mask_any_layer", "model_layer_distances",
    "sae_block", "save_gemmascope", "save_sae", "save_saelens", "save_sparsify",
    "splice_metrics", "splice_metrics_on_texts", "stream_activations", "train_group_sae",
    "train_sae", "transfer_sae",
]
