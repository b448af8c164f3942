"""Tokenizers of the pre-trained encoders, built offline from code with the official ids.

- `NucleotideTokenizer`: the Nucleotide Transformer v2 6-mer vocabulary (4,107 tokens), `<cls>`
  prepended, no `<eos>`, pad id 1 (official `nucleotide_transformer/tokenizers.py` + HF tokenizer).
- `ProteinTokenizer`: the ESM-2 amino-acid vocabulary (33 tokens), `<cls>` ... `<eos>`.
- `one_hot_encode`: A, C, G, T channels for Enformer / Borzoi; N and padding are all zeros.

Written here rather than loaded with `AutoTokenizer` because both official tokenizers need files
from the Hub (NT-v2's only as remote code), and ids must be available offline.

Nucleotides: lower case is upper-cased (soft-masked repeats are ordinary bases) and `U` reads as
`T` (RNA). Any other character (IUPAC ambiguity codes such as R or Y, gaps, digits) is an error
naming the record and its 1-based position, unless the tokenizer is built with `unknown="n"`, which
reads it as `N` (an unknown base is exactly what `N` means to both NT-v2 and the one-hot encoders).
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from isoformer.errors import IsoformerError

NT_SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
NT_KMER = 6
# Order of the official vocabulary: k-mers in itertools.product order over A, T, C, G, then singles.
NT_ALPHABET = "ATCG"
NT_SINGLE_TOKENS: tuple[str, ...] = ("A", "T", "C", "G", "N")

ESM_VOCABULARY: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H",
    "W", "C", "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>",  # an unused slot in the official vocabulary, which puts <mask> at 32
    "<mask>",
)

ONE_HOT_ALPHABET = "ACGT"

UnknownNucleotide = Literal["error", "n"]
UnknownResidue = Literal["error", "unk"]

_NUCLEOTIDE_CASE = str.maketrans("acgtunU", "ACGTTNT")
_NOT_NUCLEOTIDE = re.compile(r"[^ACGTN]")


def _record_name(records: Sequence[str] | None, index: int) -> str:
    return records[index] if records is not None else f"sequence {index}"


def _check_records(sequences: Sequence[str], records: Sequence[str] | None) -> None:
    if records is not None and len(records) != len(sequences):
        raise ValueError(f"{len(records)} record names for {len(sequences)} sequences")


def normalize_nucleotides(
    sequence: str, record: str = "sequence", unknown: UnknownNucleotide = "error"
) -> str:
    """Upper-case, U -> T, and check the alphabet (A, C, G, T, N) as the module docstring says."""
    sequence = sequence.translate(_NUCLEOTIDE_CASE)
    bad = _NOT_NUCLEOTIDE.search(sequence)
    if bad is None:
        return sequence
    if unknown == "n":
        return _NOT_NUCLEOTIDE.sub("N", sequence)
    raise IsoformerError(
        f"{record}: invalid nucleotide {bad.group()!r} at position {bad.start() + 1} "
        "(allowed: A C G T U N, any case; build the tokenizer with unknown='n' to read others as N)"
    )


def pad_token_ids(token_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists -> (input_ids LongTensor [B, L], attention_mask BoolTensor [B, L])."""
    length = max((len(ids) for ids in token_ids), default=0)
    input_ids = torch.full((len(token_ids), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), length), dtype=torch.bool)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = True
    return input_ids, attention_mask


class _Vocabulary(ABC):
    """Shared id bookkeeping of both tokenizers."""

    tokens: tuple[str, ...]
    pad_token_id: int
    cls_token_id: int
    mask_token_id: int

    def __init__(self, tokens: Sequence[str]):
        self.tokens = tuple(tokens)
        self.token_to_id = {token: index for index, token in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def id_to_token(self, token_id: int) -> str:
        return self.tokens[token_id]

    @abstractmethod
    def encode(self, sequence: str, record: str = "sequence") -> list[int]:
        """Token ids of one sequence with its special tokens, no padding."""

    def batch_encode(
        self, sequences: Sequence[str], records: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad with `pad_token_id` -> (input_ids [B, L], attention_mask [B, L])."""
        _check_records(sequences, records)
        token_ids = [
            self.encode(sequence, _record_name(records, index))
            for index, sequence in enumerate(sequences)
        ]
        return pad_token_ids(token_ids, self.pad_token_id)


class NucleotideTokenizer(_Vocabulary):
    """Nucleotide Transformer v2 6-mer tokenizer (vocabulary of 4,107 tokens).

    Ids 0-5 are `<unk>`, `<pad>`, `<mask>`, `<cls>`, `<eos>`, `<bos>`; the 4,096 6-mers follow in
    `itertools.product` order over A, T, C, G (AAAAAA=6, AAAAAT=7, ..., GGGGGG=4101); then the
    single letters A, T, C, G, N (4102-4106). A sequence is split at every N; each N-free piece is
    cut into 6-mers from its own start, a remainder shorter than 6 becomes single letters, and each
    N is its own token. `encode` prepends `<cls>` and adds no `<eos>`, like the official HF
    tokenizer.
    """

    def __init__(self, unknown: UnknownNucleotide = "error"):
        kmers = ("".join(letters) for letters in itertools.product(NT_ALPHABET, repeat=NT_KMER))
        super().__init__((*NT_SPECIAL_TOKENS, *kmers, *NT_SINGLE_TOKENS))
        self.unknown = unknown
        self.unk_token_id = self.token_to_id["<unk>"]
        self.pad_token_id = self.token_to_id["<pad>"]
        self.mask_token_id = self.token_to_id["<mask>"]
        self.cls_token_id = self.token_to_id["<cls>"]
        self.n_token_id = self.token_to_id["N"]

    def tokenize(self, sequence: str, record: str = "sequence") -> list[str]:
        """Token strings of `sequence` (no special tokens)."""
        sequence = normalize_nucleotides(sequence, record, self.unknown)
        tokens: list[str] = []
        for index, piece in enumerate(sequence.split("N")):
            if index > 0:
                tokens.append("N")  # the N that separated this piece from the previous one
            whole = len(piece) - len(piece) % NT_KMER
            tokens.extend(piece[start : start + NT_KMER] for start in range(0, whole, NT_KMER))
            tokens.extend(piece[whole:])
        return tokens

    def encode(self, sequence: str, record: str = "sequence") -> list[int]:
        """`<cls>` + token ids of `sequence`; no `<eos>`, no padding."""
        return [self.cls_token_id, *(self.token_to_id[t] for t in self.tokenize(sequence, record))]


class ProteinTokenizer(_Vocabulary):
    """ESM-2 residue tokenizer: 33 tokens, `<cls>` 0, `<pad>` 1, `<eos>` 2, `<unk>` 3, `<mask>` 32.

    One token per residue, `<cls>` prepended and `<eos>` appended, so an empty protein (a non-coding
    transcript) encodes to `[<cls>, <eos>]`. Lower-case letters are upper-cased. A character outside
    the vocabulary (a stop `*`, a digit) is an error naming the record and position unless built
    with `unknown="unk"`, which maps it to `<unk>` as the official tokenizer does.
    """

    def __init__(self, unknown: UnknownResidue = "error"):
        super().__init__(ESM_VOCABULARY)
        self.unknown = unknown
        self.cls_token_id = self.token_to_id["<cls>"]
        self.pad_token_id = self.token_to_id["<pad>"]
        self.eos_token_id = self.token_to_id["<eos>"]
        self.unk_token_id = self.token_to_id["<unk>"]
        self.mask_token_id = self.token_to_id["<mask>"]
        self._residue_ids = {
            token: index for token, index in self.token_to_id.items() if len(token) == 1
        }

    def encode(self, sequence: str, record: str = "sequence") -> list[int]:
        """`<cls>` + one id per residue + `<eos>`; no padding."""
        ids = [self.cls_token_id]
        for position, residue in enumerate(sequence.upper()):
            token_id = self._residue_ids.get(residue)
            if token_id is None:
                if self.unknown != "unk":
                    raise IsoformerError(
                        f"{record}: invalid amino acid {residue!r} at position {position + 1} "
                        "(not in the ESM-2 vocabulary; build the tokenizer with unknown='unk' "
                        "to read it as <unk>)"
                    )
                token_id = self.unk_token_id
            ids.append(token_id)
        ids.append(self.eos_token_id)
        return ids


def _one_hot_lookup() -> np.ndarray:
    """Byte -> channel (0-3 for A C G T, 4 for N = all zeros)."""
    table = np.full(256, 4, dtype=np.int64)
    for channel, base in enumerate(ONE_HOT_ALPHABET):
        table[ord(base)] = channel
    return table


_ONE_HOT_CHANNEL = _one_hot_lookup()


def one_hot_encode(
    sequences: Sequence[str],
    records: Sequence[str] | None = None,
    unknown: UnknownNucleotide = "error",
) -> tuple[torch.Tensor, torch.Tensor]:
    """DNA/RNA -> (one-hot FloatTensor [B, L, 4] in A, C, G, T order, mask BoolTensor [B, L]).

    N (and padding after a shorter sequence) is all zeros; the mask is True on real bases, N
    included. Case, U and other characters are handled as in `normalize_nucleotides`.
    """
    _check_records(sequences, records)
    length = max((len(sequence) for sequence in sequences), default=0)
    # Channel 4 is a spare all-zero column for N and padding, dropped at the end.
    channels = np.full((len(sequences), length), 4, dtype=np.int64)
    mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        sequence = normalize_nucleotides(sequence, _record_name(records, row), unknown)
        codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
        channels[row, : len(sequence)] = _ONE_HOT_CHANNEL[codes]
        mask[row, : len(sequence)] = True
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(channels), num_classes=5)
    return one_hot[..., :4].float(), mask
