"""Sequence encoders behind one interface (`SequenceEncoder`), and their tokenizers."""

from isoformer.encoders.base import (
    EncoderConfig,
    EncoderOutput,
    SequenceEncoder,
    crop_sequence,
)
from isoformer.encoders.tokenizers import (
    NucleotideTokenizer,
    ProteinTokenizer,
    normalize_nucleotides,
    one_hot_encode,
)

__all__ = [
    "EncoderConfig",
    "EncoderOutput",
    "NucleotideTokenizer",
    "ProteinTokenizer",
    "SequenceEncoder",
    "crop_sequence",
    "normalize_nucleotides",
    "one_hot_encode",
]
