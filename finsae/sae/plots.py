"""Plots of Group-SAE layer distances: the distance heatmap with the chosen groups outlined."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .grouping import is_contiguous


def plot_distances(dist, path, groups: Sequence[Sequence[int]] | None = None,
                   title: str = "angular distance between layers") -> None:
    """Heatmap of the distance matrix, with the chosen groups outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    d = np.asarray(dist)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    im = ax.imshow(d, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, label="arccos(cos) / pi")
    for g in groups or []:
        if is_contiguous([g]):
            a = min(g) - 0.5
            ax.add_patch(Rectangle((a, a), len(g), len(g), fill=False, ec="red", lw=1.5))
    ax.set_xlabel("layer (block output)")
    ax.set_ylabel("layer (block output)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
