"""Sequence encoders behind one interface (`SequenceEncoder`), and their tokenizers."""

from isoformer.encoders.base import (
    EncoderConfig,
    EncoderOutput,
    SequenceEncoder,
    crop_sequence,
)
from isoformer.encoders.modeling_nucleotide_transformer import (
    NT_V2_CHECKPOINTS,
    NT_V2_PRESETS,
    NucleotideTransformerConfig,
    NucleotideTransformerForMaskedLM,
    load_nucleotide_transformer,
)
from isoformer.encoders.nucleotide_transformer import NucleotideTransformerEncoder
from isoformer.encoders.tokenizers import (
    NucleotideTokenizer,
    ProteinTokenizer,
    normalize_nucleotides,
    one_hot_encode,
)

__all__ = [
    "NT_V2_CHECKPOINTS",
    "NT_V2_PRESETS",
    "EncoderConfig",
    "EncoderOutput",
    "NucleotideTokenizer",
    "NucleotideTransformerConfig",
    "NucleotideTransformerEncoder",
    "NucleotideTransformerForMaskedLM",
    "ProteinTokenizer",
    "SequenceEncoder",
    "crop_sequence",
    "load_nucleotide_transformer",
    "normalize_nucleotides",
    "one_hot_encode",
]
