"""A small TopK SAE and trainer for the feature-selection experiment.

Used only while `finsae.sae` (issue 5) has no trainer on this branch; the experiment prefers
`finsae.sae` when it can import it. Same recipe as the brief (section 2): TopK on the encoder
pre-activations, unit-norm decoder rows, encoder initialised as the decoder transpose, decoder
bias initialised at the data mean, inputs scaled to mean squared norm 1 (folded back into the
weights afterwards), Adam at 2e-4 / sqrt(d_sae / 2^14), MSE loss. No AuxK: short runs on
~170k tokens; dead latents are reported instead.

Speed: plain dense matmuls (about 0.5 CPU-seconds per 1,024-token step at d_sae 4608 on this
CPU); gather-based sparse kernels were slower here, since CPU index_put/embedding_bag backward
is not well optimised.
"""

from __future__ import annotations

import math
import time

import torch


class TopKSAE(torch.nn.Module):
    def __init__(self, d_in: int, d_sae: int, k: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(d_sae, d_in, generator=g)
        W = W / W.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(W.clone())
        self.W_enc = torch.nn.Parameter(W.clone())          # [d_sae, d_in]
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.cfg = type("Cfg", (), {"k": k, "d_sae": d_sae, "d_in": d_in})()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents [n, d_sae] with at most k non-zeros per row."""
        pre = (x - self.b_dec.detach()) @ self.W_enc.T + self.b_enc
        v, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, torch.relu(v))

    def forward(self, x):
        return self.encode(x) @ self.W_dec + self.b_dec


def train_topk(X: torch.Tensor, d_sae: int = 4608, k: int = 32, epochs: int = 2,
               batch: int = 1024, lr: float | None = None, seed: int = 0,
               log=print) -> tuple[TopKSAE, dict]:
    """Train on the rows of X (already stripped of massive tokens). Returns the SAE (with the
    input scaling folded into its weights, so it takes raw activations) and stats."""
    torch.manual_seed(seed)
    X = X.float()
    scale = float(math.sqrt((X.pow(2).sum(1)).mean()))
    Xs = X / scale
    sae = TopKSAE(X.shape[1], d_sae, k, seed)
    with torch.no_grad():
        sae.b_dec.copy_(Xs.mean(0))
    lr = lr or 2e-4 / math.sqrt(d_sae / 2**14)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    n = len(Xs)
    g = torch.Generator().manual_seed(seed)
    fired = torch.zeros(d_sae, dtype=torch.bool)
    t0, step = time.time(), 0
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g)
        tot, den = 0.0, 0.0
        for i in range(0, n - batch + 1, batch):
            x = Xs[perm[i:i + batch]]
            z = sae.encode(x)
            xh = z @ sae.W_dec + sae.b_dec
            err = (xh - x).pow(2).sum()
            loss = err / len(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))
                fired |= (z > 0).any(0)
                tot += float(err)
                den += float((x - x.mean(0)).pow(2).sum())
            step += 1
        log(f"  epoch {ep + 1}/{epochs}: FVU {tot / den:.3f}, {step} steps, "
            f"{time.time() - t0:.0f}s")
    # fold the input scale in: encode(x) on raw x gives the latents of x / scale, times scale
    with torch.no_grad():
        sae.b_enc.mul_(scale)
        sae.b_dec.mul_(scale)
        # W_enc unchanged: (x - b_dec*s) @ W_enc.T + b_enc*s = s * ((x/s - b_dec) @ W_enc.T + b_enc)
        # W_dec unchanged: decoding s*val through W_dec gives s * x_hat/s... plus b_dec*s
    stats = {"fvu_train_last_epoch": tot / den, "dead_fraction": float(1 - fired.float().mean()),
             "steps": step, "seconds": time.time() - t0, "scale": scale, "lr": lr}
    return sae.eval().requires_grad_(False), stats
