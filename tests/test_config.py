"""Run configs: presets load, typed overrides, errors on unknown bad values, round trip."""

import pytest

from isoformer.constants import TISSUES
from isoformer.errors import IsoformerError
from isoformer.model.config import (
    TrainingConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    load_preset,
    preset_names,
    save_config,
)


@pytest.mark.parametrize("name", ["tiny", "paper", "paper-nt"])
def test_presets_load_and_round_trip(name, tmp_path):
    config = load_preset(name)
    assert config.model.modalities == ["dna", "rna", "protein"]
    assert config.model.tissues == list(TISSUES)
    assert config_from_dict(config_to_dict(config)) == config
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_preset_contents():
    assert set(preset_names()) >= {"tiny", "paper", "paper-nt"}
    paper = load_preset("paper")
    assert paper.model.encoders["dna"].kind == "enformer"
    assert paper.model.encoders["dna"].checkpoint == "EleutherAI/enformer-official-rough"
    assert paper.model.encoders["rna"].checkpoint == (
        "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species")
    assert paper.model.encoders["protein"].checkpoint == "facebook/esm2_t30_150M_UR50D"
    assert all(e.init == "pretrained" for e in paper.model.encoders.values())
    assert paper.model.dna_length == 196_608 and paper.model.aggregation.num_heads == 8
    assert paper.training.lr == 3e-5
    assert paper.training.accumulation(1) == 16 and paper.training.accumulation(4) == 4
    paper_nt = load_preset("paper-nt")
    assert paper_nt.model.encoders["dna"].kind == "nucleotide_transformer"
    assert paper_nt.model.dna_length == 12_288
    tiny = load_preset("tiny")
    assert all(e.init == "random" for e in tiny.model.encoders.values())


def test_overrides_are_typed_in_every_spelling():
    config = apply_overrides(load_preset("tiny"), [
        "training.lr=1e-4", "--training.batch_size=8", "--training.max_epochs", "3",
        "--model.modalities", "protein,dna", "model.encoders.dna.init=pretrained",
        "model.head.dna_pool_window=2,5", "model.encoders.rna.architecture.num_hidden_layers=1",
        "training.gradient_clip_val=none", "model.standardize_targets=false",
    ])
    assert config.training.lr == 1e-4 and isinstance(config.training.lr, float)
    assert config.training.batch_size == 8 and config.training.max_epochs == 3
    assert config.model.modalities == ["dna", "protein"]  # canonical order
    assert config.model.encoders["dna"].init == "pretrained"
    assert config.model.head.dna_pool_window == (2, 5)
    assert config.model.encoders["rna"].architecture == {"preset": "tiny", "num_hidden_layers": 1}
    assert config.training.gradient_clip_val is None
    assert config.model.standardize_targets is False


@pytest.mark.parametrize("override, message", [
    ("training.lrr=1", r"training has no field 'lrr' \(valid: lr, batch_size"),
    ("model.aggregation.heads=2", "valid: kind, num_heads"),
    ("modle.lr=1", "config has no field 'modle'"),
    ("model.encoders.foo.init=random", r"has no entry 'foo' \(has: dna, rna, protein\)"),
    ("model.aggregation.kind=perceiverr", "'perceiverr' is not one of cross_attention, linear"),
    ("training.batch_size=abc", "expected int"),
    ("training.batch_size=0", "batch_size out of range"),
    ("model.modalities=dna,rna,rnaa", "non-empty subset"),
    ("model.modalities=rna", None),
    ("model.head.dna_pool_window=5,2", "0 <= start < end"),
    ("training.lr", "section.field=value"),
])
def test_override_errors(override, message):
    if message is None:  # a valid control: the same mechanism accepts it
        assert apply_overrides(load_preset("tiny"), [override]).model.modalities == ["rna"]
        return
    with pytest.raises(IsoformerError, match=message):
        apply_overrides(load_preset("tiny"), [override])


def test_dna_query_needs_dna():
    with pytest.raises(IsoformerError, match="query_modalities=dna needs dna"):
        apply_overrides(load_preset("tiny"),
                        ["model.modalities=rna,protein", "model.aggregation.query_modalities=dna"])


def test_dna_max_pool_needs_tokens_at_the_head():
    config = apply_overrides(load_preset("tiny"), ["model.head.dna_pool=max"])
    assert config.model.head.dna_pool == "max"
    with pytest.raises(IsoformerError, match="dna_pool=max has no effect with aggregation kind "
                                             "linear"):
        apply_overrides(load_preset("tiny"),
                        ["model.head.dna_pool=max", "model.aggregation.kind=linear"])


def test_missing_encoder_and_unknown_preset():
    data = config_to_dict(load_preset("tiny"))
    del data["model"]["encoders"]["protein"]
    with pytest.raises(IsoformerError, match="no encoder for protein"):
        config_from_dict(data)
    with pytest.raises(IsoformerError, match="unknown preset 'huge'"):
        load_preset("huge")


def test_effective_batch_size_derives_the_accumulation_for_the_devices():
    training = TrainingConfig(batch_size=8, effective_batch_size=64)
    assert [training.accumulation(n) for n in (1, 2, 8)] == [8, 4, 1]
    with pytest.raises(IsoformerError, match="not a multiple of batch_size 8 x 3"):
        training.accumulation(3)
    assert TrainingConfig(batch_size=8, accumulate_grad_batches=3).accumulation(2) == 3
    with pytest.raises(IsoformerError, match="set one of them"):
        TrainingConfig(effective_batch_size=64, accumulate_grad_batches=2)
