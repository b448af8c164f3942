"""Names used across layers: tissues, modalities, dataset columns, batch keys; each defined once."""

from typing import Literal

# GTEx v8 `SMTS` values in the column order of the published IsoFormer dataset (no Bone Marrow).
TISSUES: tuple[str, ...] = (
    "Adipose Tissue",
    "Adrenal Gland",
    "Bladder",
    "Blood",
    "Blood Vessel",
    "Brain",
    "Breast",
    "Cervix Uteri",
    "Colon",
    "Esophagus",
    "Fallopian Tube",
    "Heart",
    "Kidney",
    "Liver",
    "Lung",
    "Muscle",
    "Nerve",
    "Ovary",
    "Pancreas",
    "Pituitary",
    "Prostate",
    "Salivary Gland",
    "Skin",
    "Small Intestine",
    "Spleen",
    "Stomach",
    "Testis",
    "Thyroid",
    "Uterus",
    "Vagina",
)

Modality = Literal["dna", "rna", "protein"]
MODALITIES: tuple[Modality, ...] = ("dna", "rna", "protein")

SPLITS: tuple[str, ...] = ("train", "valid", "test")

# Inference arithmetic (`evaluate` / `predict --precision`): float32 throughout, or the encoders and
# the fusion under bfloat16 autocast with the head and the de-standardisation in float32.
INFERENCE_PRECISIONS: tuple[str, ...] = ("32", "bf16")

# Default DNA window (bp) centred on the TSS: 2,048 NT-v2 6-mer tokens.
DEFAULT_DNA_LENGTH = 12_288

# Training transcripts of the public GTEx dataset (`InstaDeepAI/multi_omics_transcript_expression`,
# split by gene: 82,205 / 4,718 / 4,318 train / test / validation transcripts): the size of one
# GTEx epoch where an estimate or a benchmark has no built dataset to count.
GTEX_TRAINING_TRANSCRIPTS = 82_205

# Keys of one prediction record / one dataset item; also the `export` JSONL keys.
DNA_SEQUENCE = "dna_sequence"
RNA_SEQUENCE = "rna_sequence"
PROTEIN_SEQUENCE = "protein_sequence"
SEQUENCE_KEYS: dict[Modality, str] = {
    "dna": DNA_SEQUENCE,
    "rna": RNA_SEQUENCE,
    "protein": PROTEIN_SEQUENCE,
}
TARGETS = "targets"
# A record's cached encoder outputs (modality -> [L, D] array), set by an embedding cache.
EMBEDDINGS = "embeddings"
TRANSCRIPT_ID = "transcript_id"
GENE_ID = "gene_id"
