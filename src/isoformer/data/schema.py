"""The dataset on disk: `DATASET/transcripts.parquet` (a row per transcript) and `metadata.json`.

Columns of transcripts.parquet, in this order, then one float32 column per tissue named exactly
as the tissue (log(1 + mean TPM)):
    transcript_id   str   versioned id (ENST...)
    gene_id         str   versioned id (ENSG...)
    gene_name       str   "" when the GTF has none
    transcript_type str   GENCODE transcript_type
    chrom           str   FASTA sequence name
    strand          str   "+" or "-"
    start, end      int64 transcript span, 0-based half-open genome coordinates
    tss             int64 0-based genome coordinate of the transcript's first base on its strand
                          (start on "+", end - 1 on "-")
    rna             str   spliced transcript 5'->3', upper case, T not U
    protein         str   translated CDS without the stop; "" for non-coding transcripts
    utr5_length, cds_length, utr3_length  int64  lengths within `rna` (cds includes the stop codon)
    split           str   "train" | "valid" | "test"; all isoforms of a gene share one split

then the transcript structure (STRUCTURE_COLUMNS), which `isoformer build` writes and variant
effects need; datasets built before it, or imported from InstaDeep's CSV, lack these columns, and
everything else reads them as before:
    exon_starts, exon_ends  list[int64]  the exons in genome order, 0-based half-open (as start/end)
    cds_phase       int64 phase of the first CDS row in transcript order: the translated frame
                          starts at `rna[utr5_length + cds_phase]`; 0 for non-coding transcripts

DNA windows are not stored: they are read from the indexed FASTA named in metadata.json at load
time, so one dataset serves any window length.
"""

TRANSCRIPT_COLUMNS: tuple[str, ...] = (
    "transcript_id",
    "gene_id",
    "gene_name",
    "transcript_type",
    "chrom",
    "strand",
    "start",
    "end",
    "tss",
    "rna",
    "protein",
    "utr5_length",
    "cds_length",
    "utr3_length",
    "split",
)
STRUCTURE_COLUMNS: tuple[str, ...] = ("exon_starts", "exon_ends", "cds_phase")
TRANSCRIPTS_FILE = "transcripts.parquet"
METADATA_FILE = "metadata.json"
