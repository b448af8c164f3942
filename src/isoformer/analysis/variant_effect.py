"""`isoformer variant-effect`: what each VCF allele does to the predicted expression of every
transcript it touches, per tissue, through the modalities it changes.

    summary = score_variants("runs/paper", "data/gtex", "calls.vcf.gz", "effects.parquet")

The flow, in bounded memory whatever the VCF's size:
- The dataset's transcripts (all splits, or those of `transcripts`) become `TranscriptStructure`s,
  indexed per chromosome by `span(dna_length)` (the run's DNA window and the exons: where a
  variant can change an input) as sorted starts searched with numpy, so a variant looks only at
  the transcripts near it.
- The VCF streams allele by allele (`read_vcf`: multi-allelic records split, symbolic ALTs and
  ALTs equal to their REF skipped and counted). A contig absent from the genome is an error
  naming the VCF line; a REF that differs from the genome is counted and skipped (with `strict`,
  an error naming the line).
- Each (allele, nearby transcript) goes through `variant_inputs`: the ALT's DNA window, RNA and
  protein, its consequence and protein change; pairs it returns None for (the variant is in the
  span but touches neither the window nor an exon, e.g. deep in an intron) give no row.
- Pairs are buffered (`buffer_size`), then predicted through the project's `Predictor` in
  length-sorted batches together with the reference inputs of transcripts not predicted yet;
  reference predictions are kept for the `REF_CACHE_SIZE` transcripts used last, which in a
  position-sorted VCF covers every transcript near the current position (an unsorted VCF
  predicts a transcript's reference again once it has dropped out). A pair that changes no
  modality the run reads has a delta of exactly 0 and is not predicted. Reference DNA windows
  are kept for the `WINDOW_CACHE_SIZE` transcripts used last (`WindowCachingGenome`), so the
  alleles near a transcript and its reference prediction share one read of the FASTA.

Output (written by `isoformer.analysis.variant_effect_output`), one row per (allele,
transcript) in VCF order, then dataset order of the transcripts: variant_id (chrom:pos:ref:alt,
1-based POS), transcript_id, gene_id, consequence (Sequence Ontology term), protein_change (e.g.
p.H7R, "" where none), modalities_changed (comma-joined, "" when none), delta_mean (mean over
tissues), then one column per run tissue: predicted alt minus ref in log(1 + TPM). TSV or Parquet
by the file's extension, written batch by batch under a temporary name and renamed at the end;
nothing is left on an error. The counts (`VariantEffectSummary`) are logged and written beside it
as `<out>.summary.json`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isoformer.analysis.variant_effect_output import (
    effects_frame,
    output_format,
    output_schema,
    summary_path,
    table_writer,
)
from isoformer.constants import DNA_SEQUENCE, PROTEIN_SEQUENCE, RNA_SEQUENCE
from isoformer.data.dataset import read_metadata, read_transcripts, resolve_fasta
from isoformer.data.genome import Genome
from isoformer.data.variants import (
    CONSEQUENCES,
    TranscriptStructure,
    VariantEffectInputs,
    ref_matches,
    variant_inputs,
)
from isoformer.data.vcf import Variant, VcfCounts, read_vcf
from isoformer.encoders.base import log_crops
from isoformer.errors import InputFormatError, IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.model.prediction import (
    InferencePrecision,
    Predictor,
    record_progress,
)
from isoformer.training.predict import DEFAULT_BUFFER_BATCHES
from isoformer.training.run import Run

log = logging.getLogger(__name__)

# Reference predictions kept (one [T] row each): a position-sorted VCF needs only the transcripts
# near the current position, a few hundred at most in the densest loci.
REF_CACHE_SIZE = 4096
# Reference DNA windows kept (one per transcript): those of the transcripts near the current
# position; ~50 MB at the paper's 196,608-bp window.
WINDOW_CACHE_SIZE = 256


@dataclass
class VariantEffectSummary:
    """What `score_variants` read, skipped and wrote; `<out>.summary.json` holds `to_json()`."""

    vcf: Path
    output: Path
    records: int  # VCF data lines read
    alleles: int  # (record, ALT) pairs read
    symbolic: int  # ALTs skipped as symbolic
    ref_equal_alt: int  # ALTs skipped as equal to their REF (no change)
    ref_mismatches: int  # alleles skipped: REF differs from the genome
    no_transcript: int  # alleles (REF checked) that touch no transcript's window or exons
    # (allele, transcript) pairs skipped: every exonic base deleted (transcript_ablation), no
    # RNA left to predict.
    transcript_ablations: int
    rows: int  # (allele, transcript) rows written
    consequences: dict[str, int]  # rows per consequence, every term of CONSEQUENCES
    first_ref_mismatch_line: int | None  # VCF line of the first REF mismatch
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "vcf": str(self.vcf), "output": str(self.output)}


def load_transcripts(dataset_dir: str | Path,
                     transcript_ids: Sequence[str] | None = None) -> list[TranscriptStructure]:
    """The dataset's transcripts (all splits, in file order), or those of `transcript_ids`."""
    table = read_transcripts(dataset_dir)
    if transcript_ids is not None:
        wanted = set(transcript_ids)
        if not wanted:
            raise IsoformerError("--transcripts names no transcript")
        unknown = sorted(wanted - set(table["transcript_id"].to_list()))
        if unknown:
            shown = ", ".join(unknown[:10]) + (f" (and {len(unknown) - 10} more)"
                                               if len(unknown) > 10 else "")
            raise IsoformerError(f"{dataset_dir}: no transcript {shown} in the dataset")
        table = table.filter(pl.col("transcript_id").is_in(sorted(wanted)))
    return [TranscriptStructure.from_row(row) for row in table.iter_rows(named=True)]


class WindowCachingGenome(Genome):
    """A genome that keeps the TSS windows it read last (`cache_size`): `variant_inputs` reads a
    transcript's reference window for every allele near it, and its reference prediction once
    more; each is fetched from the FASTA once while kept."""

    def __init__(self, path: str | Path, cache_size: int = WINDOW_CACHE_SIZE):
        super().__init__(path)
        self._cached_window = functools.lru_cache(maxsize=cache_size)(super().window)

    def window(self, chrom: str, tss: int, strand: str, length: int) -> str:
        return self._cached_window(chrom, tss, strand, length)


class TranscriptIndex:
    """Transcripts by chromosome, found by the genome interval where a variant can change their
    inputs (`TranscriptStructure.span`)."""

    def __init__(self, transcripts: Sequence[TranscriptStructure], dna_length: int):
        self._by_chrom: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}
        self._transcripts = list(transcripts)
        chroms: dict[str, list[int]] = {}
        for number, tx in enumerate(self._transcripts):
            chroms.setdefault(tx.chrom, []).append(number)
        for chrom, numbers in chroms.items():
            spans = np.array([self._transcripts[n].span(dna_length) for n in numbers])  # [n, 2]
            order = np.argsort(spans[:, 0], kind="stable")
            starts, ends = spans[order, 0], spans[order, 1]
            longest = int((ends - starts).max())
            self._by_chrom[chrom] = (starts, ends, np.asarray(numbers)[order], longest)

    def overlapping(self, chrom: str, start: int, end: int) -> list[TranscriptStructure]:
        """Transcripts whose span meets [start, end), in the order they were given."""
        if chrom not in self._by_chrom:
            return []
        starts, ends, numbers, longest = self._by_chrom[chrom]
        # A span meeting [start, end) starts before `end` and, being at most `longest` long,
        # after `start - longest`.
        low = np.searchsorted(starts, start - longest, side="right")
        high = np.searchsorted(starts, end, side="left")
        hits = numbers[low:high][ends[low:high] > start]
        return [self._transcripts[n] for n in np.sort(hits)]


@dataclass(frozen=True)
class VariantEffect:
    """One output row before prediction: an allele, a transcript it touches, its ALT inputs."""

    variant: Variant
    transcript: TranscriptStructure
    inputs: VariantEffectInputs


class EffectPredictor:
    """alt - ref predictions of `VariantEffect`s, each transcript's reference predicted once
    while it stays among the `cache_size` used last."""

    def __init__(self, predictor: Predictor, genome: Genome, dna_length: int,
                 modalities: Iterable[str], batch_size: int, cache_size: int = REF_CACHE_SIZE):
        self.predictor, self.genome, self.dna_length = predictor, genome, dna_length
        self.modalities = frozenset(modalities)
        self.batch_size, self.cache_size = batch_size, cache_size
        self._refs: OrderedDict[str, np.ndarray] = OrderedDict()  # transcript_id -> [T]
        self.n_tissues = len(predictor.models[0].tissues)

    def reference_record(self, tx: TranscriptStructure) -> dict[str, str]:
        return {DNA_SEQUENCE: self.genome.window(tx.chrom, tx.tss, tx.strand, self.dna_length),
                RNA_SEQUENCE: tx.rna, PROTEIN_SEQUENCE: tx.protein}

    def deltas(self, effects: Sequence[VariantEffect]) -> np.ndarray:
        """[E, T] float64: predicted log(1 + TPM) of the ALT inputs minus the reference's."""
        deltas = np.zeros((len(effects), self.n_tissues))
        scored = [i for i, effect in enumerate(effects)
                  if self.modalities & set(effect.inputs.modalities_changed)]
        if not scored:
            return deltas
        refs: dict[str, np.ndarray] = {}
        missing: dict[str, TranscriptStructure] = {}
        for i in scored:
            tx = effects[i].transcript
            if tx.transcript_id in self._refs:
                self._refs.move_to_end(tx.transcript_id)
                refs[tx.transcript_id] = self._refs[tx.transcript_id]
            elif tx.transcript_id not in refs:
                missing[tx.transcript_id] = tx
        records = [self.reference_record(tx) for tx in missing.values()]
        records += [_alt_record(effects[i].inputs) for i in scored]
        predictions = self.predictor.predict(records, self.batch_size)  # [R + S, T] float32
        for transcript_id, row in zip(missing, predictions[: len(missing)]):
            refs[transcript_id] = self._refs[transcript_id] = row
            if len(self._refs) > self.cache_size:
                self._refs.popitem(last=False)
        ref_rows = np.stack([refs[effects[i].transcript.transcript_id] for i in scored])
        deltas[scored] = predictions[len(missing):].astype(np.float64) - ref_rows
        return deltas


def _alt_record(inputs: VariantEffectInputs) -> dict[str, str]:
    return {DNA_SEQUENCE: inputs.dna, RNA_SEQUENCE: inputs.rna, PROTEIN_SEQUENCE: inputs.protein}


@dataclass
class VcfScan:
    """Alleles of one VCF checked against the genome and paired with the transcripts they touch,
    with the counts of what was skipped and written."""

    vcf: Path
    genome: Genome
    index: TranscriptIndex
    dna_length: int
    strict: bool
    ref_mismatches: int = 0
    first_ref_mismatch_line: int | None = None
    no_transcript: int = 0
    transcript_ablations: int = 0
    rows: int = 0
    consequences: Counter[str] = field(default_factory=Counter)

    def effects(self, variant: Variant) -> list[VariantEffect]:
        """The rows of `variant`: none when its REF differs from the genome (counted, or an error
        with `strict`) or it touches no transcript (counted); an absent contig is an error.
        Transcripts it deletes whole give no row (counted): there is nothing left to predict."""
        if not self._reference_ok(variant):
            return []
        effects = [
            VariantEffect(variant, tx, inputs)
            for tx in self.index.overlapping(variant.chrom, variant.start, variant.end)
            if (inputs := variant_inputs(variant, tx, self.genome, self.dna_length)) is not None
        ]
        self.no_transcript += not effects
        scored = [effect for effect in effects if effect.inputs.rna]
        self.transcript_ablations += len(effects) - len(scored)
        return scored

    def _reference_ok(self, variant: Variant) -> bool:
        genome = self.genome
        if not genome.has(variant.chrom):
            raise InputFormatError(
                self.vcf, f"contig {variant.chrom!r} is not in the genome FASTA {genome.path} "
                f"(its sequences: {', '.join(genome.chroms[:5])}...); VCF and genome must name "
                "contigs alike", variant.line)
        if ref_matches(variant, genome):
            return True
        if self.strict:
            found = genome.fetch(variant.chrom, variant.start, variant.end)
            raise InputFormatError(
                self.vcf, f"REF {variant.ref} of {variant.variant_id} differs from the genome's "
                f"{found} ({genome.path}); without --strict such alleles are counted and skipped",
                variant.line)
        self.ref_mismatches += 1
        if self.first_ref_mismatch_line is None:
            self.first_ref_mismatch_line = variant.line
        return False

    def count_written(self, effects: Sequence[VariantEffect]) -> None:
        """Add `effects` to the rows and consequences written."""
        self.rows += len(effects)
        self.consequences.update(effect.inputs.consequence for effect in effects)


def effect_buffers(scan: VcfScan, counts: VcfCounts, buffer_size: int,
                   advance: Callable[[int], None]) -> Iterator[list[VariantEffect]]:
    """The effects of the alleles of `scan.vcf`, in VCF order, `buffer_size` or more at a time
    (an allele's rows stay together); `advance(n)` after every n VCF records."""
    pending: list[VariantEffect] = []
    advanced = 0
    for variant in read_vcf(scan.vcf, counts):
        advance(counts.records - advanced)
        advanced = counts.records
        pending.extend(scan.effects(variant))
        if len(pending) >= buffer_size:
            yield pending
            pending = []
    advance(counts.records - advanced)  # records after the last allele (symbolic ALTs only)
    if pending:
        yield pending


def score_variants(
    run_dir: Run | str | Path,
    dataset_dir: str | Path,
    vcf: str | Path,
    out: str | Path,
    *,
    fasta: str | Path | None = None,
    transcripts: Sequence[str] | None = None,
    strict: bool = False,
    batch_size: int = 16,
    device: str = "auto",
    precision: InferencePrecision = "32",
    progress: bool = True,
    buffer_size: int | None = None,
) -> VariantEffectSummary:
    """Score every allele of `vcf` on the transcripts of `dataset_dir` it touches with the run's
    model; write the table to `out` (.tsv or .parquet) and its summary beside it.

    `transcripts`: only these transcript ids (all must be in the dataset). `strict`: a REF that
    differs from the genome is an error instead of a counted skip. `buffer_size`: (allele,
    transcript) pairs predicted at a time (default: `DEFAULT_BUFFER_BATCHES` batches).
    """
    start = time.perf_counter()
    vcf, out, dataset_dir = Path(vcf), Path(out), Path(dataset_dir)
    kind = output_format(out)
    if batch_size < 1:
        raise IsoformerError(f"batch_size must be at least 1 (got {batch_size})")
    buffer_size = DEFAULT_BUFFER_BATCHES * batch_size if buffer_size is None else buffer_size
    if buffer_size < 1:
        raise IsoformerError(f"buffer_size must be at least 1 (got {buffer_size})")
    if not vcf.is_file():
        raise InputFormatError(vcf, "VCF file not found")
    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir)
    fasta_path = resolve_fasta(dataset_dir, read_metadata(dataset_dir), fasta)
    structures = load_transcripts(dataset_dir, transcripts)
    predictor = Predictor(run.load_model(device), precision)
    log.info("scoring %s on %d transcripts of %s with %s (%s; DNA window %d bp)", vcf,
             len(structures), dataset_dir, run.directory, ", ".join(run.modalities),
             run.dna_length)
    counts = VcfCounts()
    with WindowCachingGenome(fasta_path) as genome:
        scan = VcfScan(vcf, genome, TranscriptIndex(structures, run.dna_length), run.dna_length,
                       strict)
        scorer = EffectPredictor(predictor, genome, run.dna_length, run.modalities, batch_size)
        with (
            atomic_output(out) as tmp,
            table_writer(tmp, kind, output_schema(run.tissues)) as write,
            record_progress(progress, description="scoring VCF records") as advance,
        ):
            for effects in effect_buffers(scan, counts, buffer_size, advance):
                write(effects_frame(effects, scorer.deltas(effects), run.tissues))
                scan.count_written(effects)
    log_crops(predictor.crops(), f"scoring {vcf}")
    summary = VariantEffectSummary(
        vcf=vcf, output=out, records=counts.records, alleles=counts.alleles,
        symbolic=counts.symbolic, ref_equal_alt=counts.ref_equal_alt,
        ref_mismatches=scan.ref_mismatches,
        no_transcript=scan.no_transcript, transcript_ablations=scan.transcript_ablations,
        rows=scan.rows,
        consequences={term: scan.consequences[term] for term in CONSEQUENCES},
        first_ref_mismatch_line=scan.first_ref_mismatch_line,
        seconds=time.perf_counter() - start,
    )
    write_json_atomic(summary.to_json(), summary_path(out))
    _log_summary(summary)
    return summary


def _log_summary(summary: VariantEffectSummary) -> None:
    observed = ", ".join(f"{term} {n}" for term, n in summary.consequences.items() if n)
    log.info(
        "%s: %d records, %d alleles (%d symbolic and %d equal to REF skipped, %d REF mismatches "
        "skipped, %d touching no transcript; %d transcripts deleted whole, not scored); %d rows "
        "written to %s in %.1f s (%s)", summary.vcf,
        summary.records, summary.alleles, summary.symbolic, summary.ref_equal_alt,
        summary.ref_mismatches, summary.no_transcript, summary.transcript_ablations,
        summary.rows, summary.output,
        summary.seconds, observed or "no rows",
    )
    if summary.ref_mismatches:
        log.warning(
            "%d alleles of %s skipped: their REF differs from the genome (first at line %d); is "
            "the VCF on the genome build of the dataset?", summary.ref_mismatches, summary.vcf,
            summary.first_ref_mismatch_line,
        )
