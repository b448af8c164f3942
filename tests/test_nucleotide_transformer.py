"""NT-v2: official checkpoint layout round trip, numerics against a hand-written reference,
masks, training modes, layer selection, crops and the paper-size configs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from isoformer.encoders import (
    CropCounts,
    EncoderConfig,
    NucleotideTransformerConfig,
    NucleotideTransformerEncoder,
    NucleotideTransformerForMaskedLM,
    load_nucleotide_transformer,
)
from isoformer.errors import IsoformerError

# Field names and values of the official config.json (nucleotide-transformer-v2-50m-multi-species),
# shrunk to a tiny width and depth.
OFFICIAL_CONFIG = {
    "add_bias_fnn": False,
    "architectures": ["EsmForMaskedLM"],
    "attention_probs_dropout_prob": 0.0,
    "auto_map": {
        "AutoConfig": "esm_config.EsmConfig",
        "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
    },
    "emb_layer_norm_before": False,
    "esmfold_config": None,
    "hidden_dropout_prob": 0.0,
    "hidden_size": 16,
    "initializer_range": 0.02,
    "intermediate_size": 24,
    "is_folding_model": False,
    "layer_norm_eps": 1e-12,
    "mask_token_id": 2,
    "max_position_embeddings": 2050,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pad_token_id": 1,
    "position_embedding_type": "rotary",
    "tie_word_embeddings": False,
    "token_dropout": False,
    "torch_dtype": "float32",
    "use_cache": False,
    "vocab_list": None,
    "vocab_size": 4107,
}
# A learned position table the official checkpoints carry and rotary models never read.
UNUSED_OFFICIAL_KEYS = {"esm.embeddings.position_embeddings.weight"}


def official_tensors(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the official key names and shapes, written out by hand."""
    generator = torch.Generator().manual_seed(seed)
    d, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    head_dim = d // heads

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.3

    tensors = {
        "esm.embeddings.word_embeddings.weight": rand(vocab, d),
        "esm.embeddings.position_embeddings.weight": rand(config["max_position_embeddings"], d),
        "esm.encoder.emb_layer_norm_after.weight": 1 + rand(d),
        "esm.encoder.emb_layer_norm_after.bias": rand(d),
        "esm.contact_head.regression.weight": rand(1, layers * heads),
        "esm.contact_head.regression.bias": rand(1),
        "lm_head.dense.weight": rand(d, d),
        "lm_head.dense.bias": rand(d),
        "lm_head.layer_norm.weight": 1 + rand(d),
        "lm_head.layer_norm.bias": rand(d),
        "lm_head.decoder.weight": rand(vocab, d),
        "lm_head.bias": rand(vocab),
    }
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    for i in range(layers):
        p = f"esm.encoder.layer.{i}."
        for name in ("query", "key", "value"):
            tensors[p + f"attention.self.{name}.weight"] = rand(d, d)
            tensors[p + f"attention.self.{name}.bias"] = rand(d)
        tensors[p + "attention.self.rotary_embeddings.inv_freq"] = inv_freq.clone()
        tensors[p + "attention.output.dense.weight"] = rand(d, d)
        tensors[p + "attention.output.dense.bias"] = rand(d)
        tensors[p + "attention.LayerNorm.weight"] = 1 + rand(d)
        tensors[p + "attention.LayerNorm.bias"] = rand(d)
        tensors[p + "intermediate.dense.weight"] = rand(2 * ffn, d)
        tensors[p + "output.dense.weight"] = rand(d, ffn)
        tensors[p + "LayerNorm.weight"] = 1 + rand(d)
        tensors[p + "LayerNorm.bias"] = rand(d)
    return tensors


@pytest.fixture
def official_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    tensors = official_tensors(OFFICIAL_CONFIG)
    (tmp_path / "config.json").write_text(json.dumps(OFFICIAL_CONFIG))
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    return tmp_path, tensors


def reference_forward(w: dict[str, torch.Tensor], config: dict, ids: torch.Tensor,
                      attentions: list | None = None) -> list:
    """NT-v2 written out from its description, unbatched: [embeddings, layer 1, ..., final LN];
    each layer's attention weights [H, L, L] are appended to `attentions` when given."""
    d, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]
    head_dim = d // heads

    def linear(x, name, bias=True):
        return x @ w[name + ".weight"].T + (w[name + ".bias"] if bias else 0)

    def norm(x, name):
        return F.layer_norm(x, (d,), w[name + ".weight"], w[name + ".bias"], eps)

    def rotate(x):  # x [H, L, hd]: rotary on (first half, second half) pairs
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(x.shape[1]).float(), inv_freq).repeat(1, 2)
        x1, x2 = x.chunk(2, dim=-1)
        return x * angles.cos() + torch.cat((-x2, x1), dim=-1) * angles.sin()

    x = w["esm.embeddings.word_embeddings.weight"][ids]  # [L, D]
    states = [x]
    for i in range(config["num_hidden_layers"]):
        p = f"esm.encoder.layer.{i}."
        h = norm(x, p + "attention.LayerNorm")
        q, k, v = (
            linear(h, p + f"attention.self.{n}").view(-1, heads, head_dim).transpose(0, 1)
            for n in ("query", "key", "value")
        )
        q, k = rotate(q * head_dim**-0.5), rotate(k)
        weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # [H, L, L]
        if attentions is not None:
            attentions.append(weights)
        attention = weights @ v  # [H, L, hd]
        x = x + linear(attention.transpose(0, 1).reshape(-1, d), p + "attention.output.dense")
        gate, value = linear(norm(x, p + "LayerNorm"), p + "intermediate.dense", False).chunk(2, -1)
        x = x + linear(F.silu(gate) * value, p + "output.dense", bias=False)
        states.append(x)
    states[-1] = norm(x, "esm.encoder.emb_layer_norm_after")
    return states


def nt_config(**fields) -> EncoderConfig:
    fields = {"architecture": {"preset": "tiny"}, **fields}
    return EncoderConfig(kind="nucleotide_transformer", **fields)


def test_official_checkpoint_round_trip(official_checkpoint):
    directory, tensors = official_checkpoint
    model = load_nucleotide_transformer(str(directory))
    state = model.state_dict()
    assert set(state) == set(tensors) - UNUSED_OFFICIAL_KEYS
    for key, value in state.items():
        assert torch.equal(value, tensors[key]), key
    assert model.config.add_bias_fnn is False and model.config.position_embedding_type == "rotary"

    encoder = NucleotideTransformerEncoder.from_pretrained(str(directory))
    again = NucleotideTransformerEncoder.from_pretrained(str(directory))
    inputs = encoder.tokenize(["ACGTACGGATTACANNACGT", "GATTACA"])
    with torch.no_grad():
        first, second, third = encoder(inputs), encoder(inputs), again(inputs)
    assert torch.equal(first.hidden, second.hidden) and torch.equal(first.hidden, third.hidden)
    # Every tensor on the path is used as NT-v2 defines it: match a hand-written forward pass.
    for row, length in enumerate(inputs["attention_mask"].sum(1).tolist()):
        ids = inputs["input_ids"][row, :length]
        expected = reference_forward(tensors, OFFICIAL_CONFIG, ids)[-1]
        torch.testing.assert_close(first.hidden[row, :length], expected, atol=1e-5, rtol=1e-5)


def test_checkpoint_missing_a_tensor_is_an_error(official_checkpoint):
    directory, tensors = official_checkpoint
    del tensors["esm.encoder.layer.1.intermediate.dense.weight"]
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IsoformerError, match=r"layer\.1\.intermediate\.dense\.weight"):
        load_nucleotide_transformer(str(directory))


def test_unreachable_checkpoint_names_it_and_the_local_directory_fix(tmp_path):
    missing = str(tmp_path / "nt-v2-250m")
    with pytest.raises(IsoformerError, match=r"nt-v2-250m.*local directory"):
        NucleotideTransformerEncoder(
            EncoderConfig(kind="nucleotide_transformer", init="pretrained", checkpoint=missing)
        )


def test_padding_never_changes_an_embedding():
    torch.manual_seed(0)
    encoder = NucleotideTransformerEncoder(nt_config()).eval()
    sequences = ["ACGTACGGATTACAGATTACAGG", "GATTNACA", "ACGTAC" * 30 + "NNA"]
    batch = encoder.tokenize(sequences)
    with torch.no_grad():
        together = encoder(batch)
        for row, sequence in enumerate(sequences):
            alone = encoder(encoder.tokenize([sequence]))
            length = alone.hidden.shape[1]
            torch.testing.assert_close(together.hidden[row, :length], alone.hidden[0])
            assert torch.equal(together.mask[row, :length], alone.mask[0])
            assert not together.mask[row, length:].any()
    assert not together.mask[:, 0].any()  # <cls> carries no sequence
    assert together.mask.sum(1).tolist() == [3 + 5, 4 + 4, 30 + 2 + 1]


def _grad_owners(encoder: NucleotideTransformerEncoder) -> set[str]:
    out = encoder(encoder.tokenize(["ACGTACGGATTACA", "GGCCAATT"]))
    if out.hidden.requires_grad:
        out.hidden.sum().backward()
    return {name for name, p in encoder.named_parameters() if p.grad is not None}


def test_frozen_full_and_last_n_training():
    assert _grad_owners(NucleotideTransformerEncoder(nt_config(train_mode="frozen"))) == set()
    assert all(
        not p.requires_grad
        for p in NucleotideTransformerEncoder(nt_config(train_mode="frozen")).parameters()
    )
    last_n = nt_config(train_mode="last_n", trainable_layers=1)
    last = _grad_owners(NucleotideTransformerEncoder(last_n))
    assert last and all(
        name.startswith(("backbone.encoder.layer.1.", "backbone.encoder.emb_layer_norm_after"))
        for name in last
    )
    full = _grad_owners(NucleotideTransformerEncoder(nt_config(train_mode="full")))
    assert {"backbone.embeddings.word_embeddings.weight",
            "backbone.encoder.layer.0.intermediate.dense.weight"} <= full
    with pytest.raises(IsoformerError, match="trainable_layers"):
        NucleotideTransformerEncoder(nt_config(train_mode="last_n", trainable_layers=3))


def test_hidden_layer_selection(official_checkpoint):
    directory, tensors = official_checkpoint
    sequence = "ACGTACGGATTACAGT"
    outputs = {}
    for layer in (0, 1, 2, -1):
        encoder = NucleotideTransformerEncoder.from_pretrained(str(directory), hidden_layer=layer)
        with torch.no_grad():
            outputs[layer] = encoder(encoder.tokenize([sequence])).hidden[0]
    ids = encoder.tokenize([sequence])["input_ids"][0]
    expected = reference_forward(tensors, OFFICIAL_CONFIG, ids)
    for layer in (0, 1, 2):
        torch.testing.assert_close(outputs[layer], expected[layer], atol=1e-5, rtol=1e-5)
    assert torch.equal(outputs[-1], outputs[2])
    # Layers after the selected one never run, so they get no gradient.
    shallow = NucleotideTransformerEncoder(nt_config(hidden_layer=1))
    assert not any("layer.1." in name for name in _grad_owners(shallow))
    with pytest.raises(IsoformerError, match="hidden_layer 3"):
        NucleotideTransformerEncoder(nt_config(hidden_layer=3))


def test_crops_are_counted_without_a_log_line_per_batch(caplog):
    encoder = NucleotideTransformerEncoder(nt_config(max_length=12))
    assert encoder.max_length == 12 and encoder.crop_rule == "center"
    with caplog.at_level(logging.INFO, logger="isoformer.encoders"):
        inputs = encoder.tokenize(["AAAAAACCCCCCGG", "TTTTTTGGGGGG", "ACG"])
    # "AAAAAACCCCCCGG" (14) keeps its centre 12, AAAAACCCCCCG: AAAAAC = 8, CCCCCG = 6 + 2731.
    assert inputs["input_ids"][0].tolist() == [3, 8, 6 + 2 * (1024 + 256 + 64 + 16 + 4) + 3, 1]
    assert encoder.crops == CropCounts("bases", seen=3, cropped=1, removed=2)
    assert "cropped" not in caplog.text

    default = NucleotideTransformerEncoder(nt_config(crop="end"))
    assert default.max_length == 12_282  # 2,047 six-mers after <cls>
    inputs = default.tokenize(["N" * 12_282])  # N is one token per base: cropped again in tokens
    assert inputs["input_ids"].shape == (1, 2048) and default.crops.cropped == 1
    with pytest.raises(IsoformerError, match="max_length"):
        NucleotideTransformerEncoder(nt_config(max_length=12_283))


@pytest.mark.parametrize("preset", ["50m", "100m", "250m", "500m"])
def test_paper_size_configs_build_with_random_weights(preset):
    """Full width, depth cut to 2 (memory), through the same code path as the full model."""
    encoder = NucleotideTransformerEncoder(
        nt_config(architecture={"preset": preset, "num_hidden_layers": 2})
    )
    width, ffn = {"50m": (512, 2048), "100m": (512, 2048), "250m": (768, 3072),
                  "500m": (1024, 4096)}[preset]
    assert encoder.output_dim == width
    layer = encoder.backbone.encoder.layer[1]
    assert layer.intermediate.dense.weight.shape == (2 * ffn, width)
    assert layer.intermediate.dense.bias is None and layer.output.dense.bias is None
    assert encoder.backbone.embeddings.word_embeddings.weight.shape == (4107, width)
    with torch.no_grad():
        out = encoder(encoder.tokenize(["ACGTACGGATTACA"]))
    assert out.hidden.shape == (1, 1 + 2 + 2, width)  # <cls>, two 6-mers, two single bases
    assert torch.isfinite(out.hidden).all()


def test_50m_preset_has_the_official_parameter_count():
    # Official 50M: 55,904,972 parameters, of which 2,050 x 512 are the unused position table.
    model = NucleotideTransformerForMaskedLM(NucleotideTransformerConfig.from_preset("50m"))
    assert sum(p.numel() for p in model.parameters()) == 55_904_972 - 2050 * 512


def explicit_attention(attention, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """NT-v2 self-attention written out: q / sqrt(d) and k rotated, padded keys masked out."""
    batch, length, width = hidden.shape
    heads = attention.num_attention_heads
    head_dim = width // heads

    def project(linear):  # [B, L, D] -> [B, H, L, hd]
        return linear(hidden).view(batch, length, heads, head_dim).transpose(1, 2)

    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(length).float(), inv_freq).repeat(1, 2)  # [L, hd]

    def rotate(x):
        x1, x2 = x.chunk(2, dim=-1)
        return x * angles.cos() + torch.cat((-x2, x1), dim=-1) * angles.sin()

    q = rotate(project(attention.query) * head_dim**-0.5)
    k = rotate(project(attention.key))
    logits = (q @ k.transpose(-1, -2)).masked_fill(~keep[:, None, None, :], float("-inf"))
    weights = torch.softmax(logits, dim=-1)  # [B, H, L, L]
    return (weights @ project(attention.value)).transpose(1, 2).reshape(batch, length, width)


def test_attention_runs_through_sdpa_and_equals_the_explicit_form(monkeypatch):
    torch.manual_seed(0)
    encoder = NucleotideTransformerEncoder(nt_config()).eval()
    assert encoder.backbone.config._attn_implementation == "sdpa"
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *args, **kwargs: calls.append(1) or sdpa(*args, **kwargs))

    inputs = encoder.tokenize(["ACGTACGGATTACAGATTACAGG", "GATTACA"])  # row 1 is padded
    keep = inputs["attention_mask"]
    assert not keep.all()
    attention = encoder.backbone.encoder.layer[0].attention.self
    hidden = torch.randn(*keep.shape, encoder.output_dim)
    mask = encoder.backbone.get_extended_attention_mask(keep.long(), keep.shape)
    with torch.no_grad():
        fused, _ = attention(hidden, attention_mask=mask)
        expected = explicit_attention(attention, hidden, keep)
    assert len(calls) == 1
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        encoder(inputs)
    assert len(calls) == 1 + encoder.num_layers  # every layer of the encoder's forward


def test_attention_maps_on_request_match_the_reference_and_keep_sdpa(official_checkpoint):
    directory, tensors = official_checkpoint
    encoder = NucleotideTransformerEncoder.from_pretrained(str(directory)).eval()
    assert encoder.exposes_attention
    sequences = ["ACGTACGGATTACAGATTACAGGT", "GATTACA"]  # row 1 is padded
    inputs = encoder.tokenize(sequences)
    with torch.no_grad():
        plain = encoder(inputs)
        output = encoder.forward_with_attentions(inputs)
    assert plain.attentions is None  # the normal path computes no maps
    assert encoder.backbone.config._attn_implementation == "sdpa"  # restored after the call
    torch.testing.assert_close(output.hidden, plain.hidden, atol=1e-5, rtol=1e-5)
    assert torch.equal(output.mask, plain.mask)
    assert len(output.attentions) == 2
    keep = inputs["attention_mask"]
    for row in range(2):
        length = int(keep[row].sum())
        expected: list = []
        reference_forward(tensors, OFFICIAL_CONFIG, inputs["input_ids"][row, :length], expected)
        for layer in range(2):
            assert output.attentions[layer].shape == (2, 2, keep.shape[1], keep.shape[1])
            weights = output.attentions[layer][row]  # [H, L, L]
            torch.testing.assert_close(weights[:, :length, :length], expected[layer],
                                       atol=1e-5, rtol=1e-5)
            assert torch.all(weights[:, :, length:] == 0)  # no query attends to padding

    # `reduce` sees each layer's maps once, in order; only what it returns is kept.
    seen = []
    shallow = NucleotideTransformerEncoder.from_pretrained(str(directory), hidden_layer=1).eval()
    with torch.no_grad():
        reduced = shallow.forward_with_attentions(
            inputs, reduce=lambda index, weights: seen.append(index) or weights.sum(dim=(2, 3)))
    assert seen == [0] and len(reduced.attentions) == 1  # layers after the returned one never run
    # Every row (query) of the maps sums to 1, padded queries' rows included.
    torch.testing.assert_close(reduced.attentions[0], torch.full((2, 2), float(keep.shape[1])))

    def fail(index, weights):
        raise RuntimeError("reduce failed")

    with pytest.raises(RuntimeError, match="reduce failed"):
        encoder.forward_with_attentions(inputs, reduce=fail)
    assert encoder.backbone.config._attn_implementation == "sdpa"
    assert not any(layer.attention.self._forward_hooks for layer in encoder.backbone.encoder.layer)


@pytest.mark.parametrize("crop", ["start", "end", "center"])
def test_token_spans_follow_tokenize_and_both_of_its_crops(crop):
    # 12 positions = 10 tokens (<cls> + 9), so N bases and remainders force the token crop too.
    architecture = {"preset": "tiny", "max_position_embeddings": 12}
    encoder = NucleotideTransformerEncoder(nt_config(architecture=architecture, crop=crop))
    assert encoder.max_tokens == 10 and encoder.max_length == 54
    tokenizer = encoder.tokenizer
    sequences = ["ACGTACGGATTACAGATTACAGGT", "GATTACA", "", "ACGTNNACGTACGGTTNAC" * 3,
                 "ACGTAC" * 12 + "GGA"]
    before = encoder.crops
    spans = encoder.token_spans(sequences)
    assert encoder.crops == before  # nothing counted
    inputs = encoder.tokenize(sequences)
    for row, (sequence, span) in enumerate(zip(sequences, spans)):
        ids = inputs["input_ids"][row, : int(inputs["attention_mask"][row].sum())].tolist()
        assert span.dtype == np.int64 and span.shape == (len(ids), 2)
        assert span[0].tolist() == [0, 0] and ids[0] == tokenizer.cls_token_id
        assert [tokenizer.token_to_id[sequence[a:b]] for a, b in span[1:]] == ids[1:]
        assert (span[1:, 0] < span[1:, 1]).all() and (span[2:, 0] == span[1:-1, 1]).all()
    # 57 bases -> 54 kept, whose N bases and remainders still make 21 tokens -> 9 kept.
    assert len(spans[3]) == 10 and len(tokenizer.tokenize(sequences[3][:54])) > 9
    # 75 bases -> 54 kept (nine 6-mers, no token crop): [0, 54), [21, 75) or [10, 64).
    first = {"start": 0, "end": 21, "center": 75 // 2 - 54 // 2}[crop]
    assert spans[4][1:].tolist() == [[first + 6 * i, first + 6 * i + 6] for i in range(9)]
