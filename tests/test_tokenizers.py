"""Token ids pinned on hand-checked sequences, cross-checked against transformers' EsmTokenizer."""

from __future__ import annotations

import pytest
import torch

from isoformer.encoders import NucleotideTokenizer, ProteinTokenizer, one_hot_encode
from isoformer.errors import IsoformerError

CLS, PAD, A, T, C, G, N = 3, 1, 4102, 4103, 4104, 4105, 4106
# 6-mer ids worked out on paper: 6 + base-4 value with A=0, T=1, C=2, G=3.
ATCGAA = 6 + 1 * 256 + 2 * 64 + 3 * 16  # 438
GGCGAT = 6 + 3 * 1024 + 3 * 256 + 2 * 64 + 3 * 16 + 1  # 4023
ACGTAC = 6 + 2 * 256 + 3 * 64 + 1 * 16 + 2  # 728


@pytest.fixture(scope="module")
def nt() -> NucleotideTokenizer:
    return NucleotideTokenizer()


def test_nt_vocabulary_layout(nt):
    assert nt.vocab_size == 4107
    assert [nt.id_to_token(i) for i in range(6)] == [
        "<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"
    ]
    assert (nt.pad_token_id, nt.mask_token_id, nt.cls_token_id) == (1, 2, 3)
    assert [nt.id_to_token(i) for i in range(4102, 4107)] == ["A", "T", "C", "G", "N"]
    assert [nt.encode(kmer)[1] for kmer in ("AAAAAA", "AAAAAT", "AAAAAC", "AAAAAG")] == [6, 7, 8, 9]
    assert nt.encode("AAAAAA")[1:] == [6]
    assert nt.encode("GGGGGG") == [CLS, 4101]
    assert nt.id_to_token(ATCGAA) == "ATCGAA"


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        # REFERENCE docstring example, k=6: ATCGAA T | N | GGCGAT G C A C
        ("ATCGAATNGGCGATGCAC", [CLS, ATCGAA, T, N, GGCGAT, G, C, A, C]),
        ("NACGTAC", [CLS, N, ACGTAC]),  # N at the start
        ("ACGTACN", [CLS, ACGTAC, N]),  # N at the end
        ("NNACGTACNN", [CLS, N, N, ACGTAC, N, N]),
        ("ACGTACGT", [CLS, ACGTAC, G, T]),  # remainder of 2 as single letters
        ("ACGTA", [CLS, A, C, G, T, A]),  # shorter than one 6-mer
        ("ACNGTACGTACG", [CLS, A, C, N, 6 + 3 * 1024 + 1 * 256 + 0 + 2 * 16 + 3 * 4 + 1, A, C, G]),
        ("acgtac", [CLS, ACGTAC]),  # lower case (soft-masked) reads as upper case
        ("ACGUAC", [CLS, ACGTAC]),  # RNA: U reads as T
        ("acgtacn", [CLS, ACGTAC, N]),
        ("", [CLS]),
    ],
)
def test_nt_encode_pinned(nt, sequence, expected):
    assert nt.encode(sequence) == expected


def test_nt_unknown_characters_error_or_map_to_n(nt):
    with pytest.raises(IsoformerError, match=r"ENST01: invalid nucleotide 'R' at position 4"):
        nt.encode("ACGRT", record="ENST01")
    with pytest.raises(IsoformerError, match=r"tx2: .* position 2"):
        nt.batch_encode(["ACGT", "A-GT"], records=["tx1", "tx2"])
    assert NucleotideTokenizer(unknown="n").encode("ACGRT") == [CLS, A, C, G, N, T]


def test_nt_batch_encode_pads_with_1_and_masks(nt):
    input_ids, attention_mask = nt.batch_encode(["ACGTACGT", "NACGTAC", "A"])
    assert input_ids.dtype == torch.long and attention_mask.dtype == torch.bool
    assert input_ids.tolist() == [
        [CLS, ACGTAC, G, T],
        [CLS, N, ACGTAC, PAD],
        [CLS, A, PAD, PAD],
    ]
    assert attention_mask.tolist() == [
        [True, True, True, True],
        [True, True, True, False],
        [True, True, False, False],
    ]


def test_protein_vocabulary_and_pinned_ids():
    tokenizer = ProteinTokenizer()
    assert tokenizer.vocab_size == 33
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert (tokenizer.unk_token_id, tokenizer.mask_token_id) == (3, 32)
    # From the vocabulary table: M=20 K=15 T=11 A=5 Y=19 I=12 Q=16 R=10 L=4 W=22 C=23 -=30.
    assert tokenizer.encode("MKTAYIAKQR") == [0, 20, 15, 11, 5, 19, 12, 5, 15, 16, 10, 2]
    assert tokenizer.encode("mlwc-") == [0, 20, 4, 22, 23, 30, 2]
    assert tokenizer.encode("") == [0, 2]


def test_protein_unknown_residue_error_or_unk():
    with pytest.raises(IsoformerError, match=r"P1: invalid amino acid '\*' at position 3"):
        ProteinTokenizer().encode("MK*", record="P1")
    assert ProteinTokenizer(unknown="unk").encode("MK*") == [0, 20, 15, 3, 2]
    input_ids, mask = ProteinTokenizer().batch_encode(["MK", ""])
    assert input_ids.tolist() == [[0, 20, 15, 2], [0, 2, 1, 1]]
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]


def test_ids_match_transformers_esm_tokenizer(tmp_path):
    """EsmTokenizer (the class behind both official HF tokenizers) built from our vocabularies."""
    from transformers import EsmTokenizer

    nt = NucleotideTokenizer()
    (tmp_path / "nt.txt").write_text("\n".join(nt.tokens) + "\n")
    reference = EsmTokenizer(str(tmp_path / "nt.txt"))
    for sequence in ("ATCGAATNGGCGATGCAC", "NNACGTACGGTTAN", "GATTACA" * 9 + "NA"):
        official = reference(sequence, add_special_tokens=False)["input_ids"]
        assert nt.encode(sequence) == [CLS, *official]

    protein = ProteinTokenizer()
    (tmp_path / "esm.txt").write_text("\n".join(protein.tokens) + "\n")
    reference = EsmTokenizer(str(tmp_path / "esm.txt"))
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"
    assert protein.encode(sequence) == reference(sequence)["input_ids"]
    assert reference.convert_tokens_to_ids("<mask>") == protein.mask_token_id


def test_one_hot_acgt_order_n_and_padding_zero():
    one_hot, mask = one_hot_encode(["ACGTN", "ua"])
    assert one_hot.shape == (2, 5, 4) and one_hot.dtype == torch.float32
    assert one_hot[0].tolist() == [
        [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0],
    ]
    assert one_hot[1].tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]] + [[0, 0, 0, 0]] * 3
    assert mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    with pytest.raises(IsoformerError, match=r"chr1:5-9: invalid nucleotide 'Y' at position 2"):
        one_hot_encode(["AY"], records=["chr1:5-9"])
    assert one_hot_encode(["AY"], unknown="n")[0][0, 1].tolist() == [0, 0, 0, 0]
