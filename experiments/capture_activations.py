"""Stand-in activation capture used for experiments/results/features_selection.md (finsae.lm had
no commit yet): residual stream after blocks 5, 10, 15, 20, 25 of SmolLM2-135M for the bundled
descriptions, no BOS prepended (the first token is then the attention sink; the experiment drops
tokens with norm > 10x median), texts truncated at 2,048 tokens, shortest texts first, written
as float32 .npy memmaps + offsets/token ids/meta.json, resumable by batch. Usage:
    python experiments/capture_activations.py OUT_DIR
then `python experiments/feature_selection.py --acts OUT_DIR`. Once finsae.lm is merged, running
feature_selection.py without --acts uses finsae.lm.encode_texts instead (BOS prepended)."""
import sys, json, time, os
import numpy as np, pandas as pd, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(2)
LAYERS = [5, 10, 15, 20, 25]
OUT = Path(sys.argv[1]); OUT.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from finsae.data.paths import cache_dir
folder = next(cache_dir("models").glob("SmolLM2*"))  # dequantized by finsae.lm.load_lm
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
c = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "companies.csv", dtype={"ticker": str}, keep_default_na=False)
c = c[c.description.str.strip() != ""]
tickers = c.ticker.tolist(); texts = c.description.str.strip().tolist()
enc = [tok(t, add_special_tokens=False)["input_ids"][:2048] for t in texts]
lens = np.array([len(e) for e in enc]); offsets = np.concatenate([[0], np.cumsum(lens)])
N = int(offsets[-1]); print("tokens", N, "docs", len(enc), flush=True)
np.save(OUT / "offsets.npy", offsets); np.save(OUT / "token_ids.npy", np.concatenate(enc).astype(np.int32))
json.dump({"tickers": tickers, "layers": LAYERS}, open(OUT / "meta.json", "w"))
mm = {L: np.lib.format.open_memmap(OUT / f"L{L}.npy", mode="r+" if (OUT / f"L{L}.npy").exists() else "w+", dtype=np.float32, shape=(N, 576)) for L in LAYERS}
done_f = OUT / "done.txt"; done = set(int(x) for x in done_f.read_text().split()) if done_f.exists() else set()
class Stop(Exception): pass
store = {}
layers = model.model.layers
def mk(L):
    def h(mod, inp, out):
        store[L] = (out[0] if isinstance(out, tuple) else out).detach()
        if L == max(LAYERS): raise Stop
    return h
for L in LAYERS: layers[L].register_forward_hook(mk(L))
order = np.argsort(lens)
budget = 4096  # tokens per batch (padded)
batches, cur = [], []
for i in order:
    if cur and (len(cur) + 1) * lens[i] > budget: batches.append(cur); cur = []
    cur.append(int(i))
batches.append(cur)
t0 = time.time(); ntok = 0
for bi, b in enumerate(batches):
    if bi in done: continue
    m = max(lens[i] for i in b)
    ids = torch.full((len(b), m), tok.pad_token_id or 0); att = torch.zeros((len(b), m), dtype=torch.long)
    for r, i in enumerate(b): ids[r, :lens[i]] = torch.tensor(enc[i]); att[r, :lens[i]] = 1
    with torch.no_grad():
        try: model.model(input_ids=ids, attention_mask=att)
        except Stop: pass
    for L in LAYERS:
        h = store[L].numpy()
        for r, i in enumerate(b): mm[L][offsets[i]:offsets[i+1]] = h[r, :lens[i]]
        mm[L].flush()
    with open(done_f, "a") as f: f.write(f"{bi}\n")
    ntok += sum(lens[i] for i in b)
    print(bi, len(batches), ntok, f"{ntok/(time.time()-t0):.0f} tok/s", flush=True)
print("DONE", flush=True)
