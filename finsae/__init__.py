"""finsae: quantitative finance on sparse-autoencoder features of language models.

The packages follow the data flow (docs/architecture.md lists every module, one line each):
data -> lm -> sae -> features -> evaluate -> methods -> pairs -> pipeline -> cli.
"""

__version__ = "0.1.0"
