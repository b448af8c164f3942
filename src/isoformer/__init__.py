"""IsoFormer: predict transcript-isoform expression in 30 GTEx tissues from DNA, RNA and protein."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("isoformer")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
