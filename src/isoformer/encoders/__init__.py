"""Sequence encoders behind one interface (`SequenceEncoder`), and their tokenizers."""

from isoformer.encoders.base import (
    CropCounts,
    EncoderConfig,
    EncoderOutput,
    SequenceEncoder,
    crop_sequence,
)
from isoformer.encoders.borzoi import BorzoiEncoder
from isoformer.encoders.enformer import EnformerEncoder
from isoformer.encoders.esm import EsmEncoder
from isoformer.encoders.modeling_nucleotide_transformer import (
    NT_V2_CHECKPOINTS,
    NT_V2_PRESETS,
    NucleotideTransformerConfig,
    NucleotideTransformerForMaskedLM,
    load_nucleotide_transformer,
)
from isoformer.encoders.nucleotide_transformer import NucleotideTransformerEncoder
from isoformer.encoders.registry import (
    ENCODER_KINDS,
    build_encoder,
    encoder_architecture,
    encoder_config,
)
from isoformer.encoders.tokenizers import (
    NucleotideTokenizer,
    ProteinTokenizer,
    normalize_nucleotides,
    one_hot_encode,
)

__all__ = [
    "ENCODER_KINDS",
    "NT_V2_CHECKPOINTS",
    "NT_V2_PRESETS",
    "BorzoiEncoder",
    "CropCounts",
    "EncoderConfig",
    "EncoderOutput",
    "EnformerEncoder",
    "EsmEncoder",
    "NucleotideTokenizer",
    "NucleotideTransformerConfig",
    "NucleotideTransformerEncoder",
    "NucleotideTransformerForMaskedLM",
    "ProteinTokenizer",
    "SequenceEncoder",
    "build_encoder",
    "crop_sequence",
    "encoder_architecture",
    "encoder_config",
    "load_nucleotide_transformer",
    "normalize_nucleotides",
    "one_hot_encode",
]
