"""Attribution: the encoders' input representations, in-silico mutagenesis against hand-set
models, gradient x input against finite differences, spans, targets, files and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from isoformer.analysis import attribution_files, attribution_truth
from isoformer.analysis.attribution import (
    MUTATION_ALPHABETS,
    Target,
    ism_position_scores,
    ism_scores,
    mutant_count,
    saliency_scores,
)
from isoformer.analysis.attribution_files import attribute_file
from isoformer.analysis.attribution_plot import RnaRegions, plot_attribution
from isoformer.cli import main
from isoformer.constants import DNA_SEQUENCE, PROTEIN_SEQUENCE, RNA_SEQUENCE, SEQUENCE_KEYS
from isoformer.data.build import build_dataset
from isoformer.data.expression_model import ExpressionRules, Motif, ProteinFeature
from isoformer.data.simulate import simulate_study
from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.registry import build_encoder, encoder_config
from isoformer.errors import IsoformerError
from isoformer.model.config import apply_overrides, load_preset
from isoformer.model.isoformer import IsoFormer
from isoformer.model.kmer_baseline import KmerBaseline, KmerBaselineConfig
from isoformer.model.prediction import Predictor
from isoformer.training.baseline import fit_baseline
from isoformer.training.run import Run, TargetStatistics

pytestmark = pytest.mark.usefixtures("single_thread")

ENCODER_INPUTS = {
    "enformer": ["ACGTN" * 20 + "ACGTACGTACGT", "GGCCA" * 22 + "TT"],  # 112 bp
    "nucleotide_transformer": ["ACGTACGTACGTAC", "ACGTAACCGGTTNACGT"],
    "esm2": ["MKVLAW", "MCC"],
}


def _frozen(kind: str, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    size_fields = {"max_length": 96} if kind == "enformer" else {}
    return build_encoder(encoder_config(kind, "tiny", train_mode="frozen",
                                        **{**size_fields, **fields})).eval()


@pytest.mark.parametrize("kind", list(ENCODER_INPUTS))
def test_input_representations_reach_the_input_through_frozen_encoders(kind):
    encoder = _frozen(kind)
    inputs = encoder.tokenize(ENCODER_INPUTS[kind])
    plain = encoder(inputs)
    assert not plain.hidden.requires_grad  # frozen: no graph unless an attribution asks
    with encoder.input_representations() as captured:
        output = encoder(inputs)
    (representation,) = captured
    assert representation.is_leaf and representation.requires_grad
    spans = encoder.token_spans(ENCODER_INPUTS[kind])
    assert representation.shape[:2] == (2, max(len(s) for s in spans))
    width = 4 if kind == "enformer" else encoder.backbone.config.hidden_size
    assert representation.shape[2] == width
    # The same values, now differentiable with respect to the representation.
    torch.testing.assert_close(output.hidden, plain.hidden)
    (gradient,) = torch.autograd.grad(output.hidden.sum(), representation)
    assert gradient.abs().sum() > 0
    # After the block the encoder is as before: nothing captured, no graph.
    assert encoder._captured_inputs is None and not encoder(inputs).hidden.requires_grad


def test_token_spans_of_one_hot_and_residue_encoders_by_hand():
    enformer = _frozen("enformer", max_length=32)
    # A 40-bp window cropped to 32 around its centre keeps bases 20 - 16 = 4 .. 35.
    (spans,) = enformer.token_spans(["A" * 40])
    assert spans.tolist() == [[i, i + 1] for i in range(4, 36)]
    esm = build_encoder(EncoderConfig(kind="esm2", architecture={"preset": "tiny"},
                                      max_length=4, crop="start"))
    short, long = esm.token_spans(["MK", "MKVLA"])
    assert short.tolist() == [[0, 0], [0, 1], [1, 2], [0, 0]]
    assert long.tolist() == [[0, 0], [0, 1], [1, 2], [2, 3], [3, 4], [0, 0]]  # A cropped
    assert esm.tokenize(["MKVLA"])["input_ids"].shape == (1, len(long))


# ---- in-silico mutagenesis against hand-set k-mer baselines ----

TISSUES = ["Liver", "Heart"]


def _baseline(modalities: list[str], weights: dict[int, list[float]], dna_length: int = 4
              ) -> KmerBaseline:
    """A k-mer baseline (1-mers) whose prediction is sum_f weights[f] * feature_f, features
    unstandardised: dna [A/T, C/G] counts, rna [A, C, G, T] counts + log2 length, protein the
    shares of ACDEFGHIKLMNPQRSTVWY + log2 length + non-coding flag."""
    config = KmerBaselineConfig(modalities=modalities, tissues=TISSUES, dna_length=dna_length,
                                dna_k=1, rna_k=1)
    n_features = {"dna": 2, "rna": 5, "protein": 22}
    width = sum(n_features[m] for m in config.modalities)
    matrix = np.zeros((width, len(TISSUES)))
    for feature, per_tissue in weights.items():
        matrix[feature] = per_tissue
    state = {"mean": np.zeros(width), "std": np.ones(width), "weights": matrix,
             "bias": np.zeros(len(TISSUES)), "alpha": np.ones(len(TISSUES)),
             "valid_mse": np.zeros(len(TISSUES))}
    return KmerBaseline(config, state)


def _baseline_run(directory: Path, baseline: KmerBaseline) -> Path:
    statistics = TargetStatistics(np.zeros(len(TISSUES), np.float32),
                                  np.ones(len(TISSUES), np.float32))
    run = Run.create(directory, baseline.config, statistics, {"path": "hand-set weights"})
    run.write_model(baseline.save_pretrained)
    return directory


CYSTEINE = 1  # C's share in the protein features (A=0, C=1, ...)


def test_ism_of_a_cysteine_rule_is_the_matrix_derived_by_hand():
    """prediction = share of C x (1 Liver, 3 Heart): in MCK (L = 3) a mutation to C adds 1/3 of
    a share, C mutated away removes it; mean target = 2 x share."""
    predictor = Predictor(_baseline(["protein"], {CYSTEINE: [1.0, 3.0]}))
    record = {DNA_SEQUENCE: "", RNA_SEQUENCE: "", PROTEIN_SEQUENCE: "MCK"}
    mean = Target.resolve(TISSUES, None)
    delta, reference = ism_scores(predictor, record, "protein", mean, (0, 3), batch_size=7)
    alphabet = MUTATION_ALPHABETS["protein"]
    expected = np.zeros((3, 20))
    expected[0, alphabet.index("C")] = expected[2, alphabet.index("C")] = 2 / 3
    expected[1] = -2 / 3
    expected[1, alphabet.index("C")] = 0.0  # the reference letter
    np.testing.assert_allclose(delta, expected, atol=1e-6)
    assert reference == pytest.approx(2 / 3)
    scores = ism_position_scores(delta, "MCK", alphabet)
    np.testing.assert_allclose(scores, [-(2 / 3) / 19, 2 / 3, -(2 / 3) / 19], atol=1e-6)
    heart, _ = ism_scores(predictor, record, "protein", Target.resolve(TISSUES, "Heart"),
                          (1, 2), batch_size=3)
    assert np.isnan(heart[[0, 2]]).all()  # outside the span
    np.testing.assert_allclose(heart[1], np.where(np.arange(20) == CYSTEINE, 0.0, -1.0),
                               atol=1e-6)


def test_ism_of_a_gc_rule_counts_n_with_four_alternatives_whatever_the_batches():
    """prediction = G/C count: in ACNG, A -> C/G adds 1, C -> A/T removes 1, N -> C/G adds 1
    (N is never counted), G like C."""
    predictor = Predictor(_baseline(["dna"], {1: [1.0, 1.0]}))
    record = {DNA_SEQUENCE: "ACNG", RNA_SEQUENCE: "A", PROTEIN_SEQUENCE: ""}
    mean = Target.resolve(TISSUES, None)
    expected = np.array([[0, 1, 1, 0], [-1, 0, 0, -1], [0, 1, 1, 0], [-1, 0, 0, -1]])  # ACGT
    for batch_size in (1, 5, 64):
        delta, _ = ism_scores(predictor, record, "dna", mean, (0, 4), batch_size)
        np.testing.assert_allclose(delta, expected, atol=1e-6)
    scores = ism_position_scores(delta, "ACNG", "ACGT")
    np.testing.assert_allclose(scores, [-2 / 3, 2 / 3, -1 / 2, 2 / 3], atol=1e-6)
    assert mutant_count("ACNG", "ACGT", (0, 4)) == 3 + 3 + 4 + 3


# ---- files, errors and the command line ----

G_COUNT = 2 + 2  # rna features follow the two dna ones: A, C, G, T counts, log2 length


def _gc_run(tmp_path: Path) -> Path:
    """prediction = DNA G/C count + RNA G count (+1 Liver, +3 Heart for the G count)."""
    return _baseline_run(tmp_path / "run", _baseline(["dna", "rna"],
                                                     {1: [1.0, 1.0], G_COUNT: [1.0, 3.0]}))


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _rna_record(transcript_id: str, rna: str, **fields) -> str:
    return json.dumps({"transcript_id": transcript_id, DNA_SEQUENCE: "ACGT", RNA_SEQUENCE: rna,
                       **fields})


def test_attribute_writes_scores_figures_and_a_summary_and_counts_what_it_skipped(tmp_path,
                                                                                  capsys):
    run = _gc_run(tmp_path)
    source = _write_lines(tmp_path / "in.jsonl", [
        _rna_record("ENST1.1", "augg", utr5_length=1, cds_length=2),  # U read as T, lower case
        "{not json",
        _rna_record("ENST2/1", "GGXA"),  # invalid letter
        _rna_record("ENST3.1", "GATC", utr5_length=1, cds_length=5),  # regions do not fit
        _rna_record("ENST4.1", "GAAC", utr5_length=0, cds_length=0, utr3_length=0),  # non-coding
    ])
    out = tmp_path / "attr"
    code = main(["attribute", "--run", str(run), "--input", str(source), "--modality", "rna",
                 "--method", "ism", "--span", "1:3", "--tissue", "Heart", "--out", str(out),
                 "--no-progress"])
    assert code == 1  # two records could not be read or were invalid
    assert "3 of 5 records attributed" in capsys.readouterr().out
    scores = np.load(out / "attributions.npz")
    assert scores["record_ids"].tolist() == ["ENST1.1", "ENST3.1", "ENST4.1"]
    assert scores["span_starts"].tolist() == [1] * 3 and scores["span_ends"].tolist() == [3] * 3
    assert str(scores["alphabet"]) == "ACGT"
    # ATGG, Heart = 3 x G count: position 1 (T) -> G adds 3, position 2 (G) -> A/C/T removes 3.
    expected = np.full((4, 4), np.nan)
    expected[1], expected[2] = [0, 0, 3, 0], [-3, -3, 0, -3]
    np.testing.assert_allclose(scores["ism/0"], expected, atol=1e-5)
    np.testing.assert_allclose(scores["scores/0"], [np.nan, -1, 3, np.nan], atol=1e-5)
    assert scores["reference"][0] == pytest.approx(3 * 2 + 1 * 2)  # 2 G (RNA), 2 G/C (DNA)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == {"unreadable": 1, "invalid": 1}
    assert [r["where"] for r in summary["skipped_records"]] == ["line 2", "line 3"]
    assert "invalid characters" in summary["skipped_records"][1]["message"]
    assert [r["where"] for r in summary["unshaded_figures"]] == ["line 4"]  # not line 5
    assert summary["target"] == "Heart log(1+TPM)" and summary["span"] == "1:3"
    assert sorted(p.name for p in out.iterdir()) == [
        "ENST1.1.png", "ENST3.1.png", "ENST4.1.png", "attributions.npz", "summary.json"]
    assert (out / "ENST1.1.png").read_bytes()[:4] == b"\x89PNG"
    # A second run into the same directory is refused, not mixed with the first.
    assert main(["attribute", "--run", str(run), "--input", str(source), "--modality", "rna",
                 "--method", "ism", "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def test_rna_regions_come_from_the_record_lengths():
    regions = RnaRegions.from_record({"utr5_length": 2, "cds_length": 6}, 10)  # 3'UTR: the rest
    assert regions == RnaRegions(2, 6, 2)
    assert list(regions.bounds()) == [("5'UTR", 0, 2), ("CDS", 2, 8), ("3'UTR", 8, 10)]
    assert list(RnaRegions(0, 6, 4).bounds()) == [("CDS", 0, 6), ("3'UTR", 6, 10)]
    assert RnaRegions.from_record({"transcript_id": "x"}, 10) is None
    assert RnaRegions.from_record({"utr5_length": 0, "cds_length": 0, "utr3_length": 0}, 10) is None
    for bad in ({"utr5_length": 2, "cds_length": 6, "utr3_length": 1}, {"utr5_length": 2},
                {"utr5_length": 2.5, "cds_length": 6}, {"utr5_length": -1, "cds_length": 6}):
        with pytest.raises(ValueError, match="utr5_length|region lengths"):
            RnaRegions.from_record(bad, 10)


def test_bad_settings_are_one_line_errors_and_write_nothing(tmp_path):
    run = _gc_run(tmp_path)
    source = _write_lines(tmp_path / "in.jsonl", [_rna_record("ENST1.1", "GGAT"),
                                                  _rna_record("ENST2.1", "GG")])
    out = tmp_path / "attr"

    def attribute(**settings):
        return attribute_file(run, source, out, **{"modality": "rna", "method": "ism",
                                                   "progress": False, **settings})

    with pytest.raises(IsoformerError, match=r"in.jsonl: line 2: --span 1:3 reaches past the "
                                             r"end of its rna_sequence \(2 long\)"):
        attribute(span="1:3")
    for text in ("3:1", "1-3", "a:b", "2:2"):
        with pytest.raises(IsoformerError, match="expected A:B"):
            attribute(span=text)
    with pytest.raises(IsoformerError, match="'Lung' is not one of the run's tissues: Liver, "
                                             "Heart"):
        attribute(tissue="Lung")
    with pytest.raises(IsoformerError, match="reads dna, rna"):
        attribute(modality="protein")
    with pytest.raises(IsoformerError, match="k-mer baseline has no gradients"):
        attribute(method="saliency")
    twins = _write_lines(tmp_path / "twins.jsonl", [_rna_record("ENST1/1", "GG"),
                                                    _rna_record("ENST1_1", "GA")])
    with pytest.raises(IsoformerError, match="line 2: record id 'ENST1_1' gives the figure "
                                             "ENST1_1.png of line 1 too"):
        attribute_file(run, twins, out, modality="rna", method="ism")
    assert not out.exists() and {p.name for p in tmp_path.iterdir()} == {
        "run", "in.jsonl", "twins.jsonl"}


def test_a_failure_while_writing_leaves_no_output(tmp_path, monkeypatch):
    run = _gc_run(tmp_path)
    source = _write_lines(tmp_path / "in.jsonl", [_rna_record("a", "GGAT"),
                                                  _rna_record("b", "GCAT")])
    drawn = []

    def failing_plot(*args, **kwargs):
        if drawn:
            raise OSError(28, "No space left on device")
        drawn.append(plot_attribution(*args, **kwargs))

    monkeypatch.setattr(attribution_files, "plot_attribution", failing_plot)
    with pytest.raises(OSError):
        attribute_file(run, source, tmp_path / "attr", modality="rna", method="ism",
                       progress=False)
    assert drawn and {p.name for p in tmp_path.iterdir()} == {"run", "in.jsonl"}


# ---- an IsoFormer: gradient x input, shared encoder states, the command line ----

RANDOM = np.random.default_rng(0)
ISOFORMER_RECORD = {
    "transcript_id": "ENST9.1",
    # 100 bp: the model's 96-bp window drops 2 bases on each side.
    DNA_SEQUENCE: "".join(RANDOM.choice(list("ACGT"), 100)),
    # 40 nt: <cls>, six 6-mers (bases 0-35), then four single bases.
    RNA_SEQUENCE: "".join(RANDOM.choice(list("ACGT"), 40)),
    PROTEIN_SEQUENCE: "MKVLAWCCDERH",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A random-weight tiny IsoFormer (Enformer, NT-v2, ESM-2) saved as a run, with target
    statistics that make de-standardisation do something."""
    torch.manual_seed(0)
    config = apply_overrides(load_preset("tiny"), ["model.dna_length=96",
                                                   f"model.tissues={','.join(TISSUES)}"])
    model = IsoFormer.from_config(config.model)
    statistics = TargetStatistics(np.array([1.0, 2.0], np.float32),
                                  np.array([0.5, 2.0], np.float32))
    model.set_target_statistics(statistics.mean, statistics.std)
    directory = tmp_path_factory.mktemp("runs") / "tiny"
    run = Run.create(directory, config, statistics, {"path": "random weights"})
    run.write_model(model.save_pretrained)
    return directory


def _prediction_with_scaled_token(model: IsoFormer, modality: str, token: int, factor: float,
                                  target: Target) -> float:
    """The target with one token of the input representation multiplied by `factor`: the one-hot
    row of the window, or the embedding row (a forward hook on the embedding layer)."""
    batch = model.tokenize([ISOFORMER_RECORD])
    handle = None
    if modality == "dna":  # in float64: 1 +- 1e-4 is not exact in float32
        one_hot = batch["inputs"]["dna"]["one_hot"] = batch["inputs"]["dna"]["one_hot"].double()
        one_hot[0, token] *= factor
    else:
        def scale(module, args, output):
            output = output.clone()
            output[0, token] *= factor
            return output

        handle = model.encoders[modality].backbone.embeddings.register_forward_hook(scale)
    try:
        with torch.no_grad():
            return float(target.select(model.to_log1p(model(batch).predictions))[0])
    finally:
        if handle is not None:
            handle.remove()


def test_saliency_is_the_derivative_along_each_token_of_the_input_representation(tiny_run):
    """Gradient x input of token k is d/de target(representation with row k scaled by 1 + e) at
    e = 0: checked by central differences in float64, then mapped to positions."""
    model = Run.open(tiny_run).load_model().double().eval()
    target = Target.resolve(TISSUES, "Heart")
    eps = 1e-4

    def derivative(modality: str, token: int) -> float:
        up, down = (_prediction_with_scaled_token(model, modality, token, 1 + sign * eps, target)
                    for sign in (1, -1))
        return (up - down) / (2 * eps)

    scores = {m: saliency_scores(model, [ISOFORMER_RECORD], m, target)[0][0]
              for m in ("dna", "rna", "protein")}
    assert scores["dna"].shape == (100,) and scores["dna"][[0, 1, 98, 99]].tolist() == [0] * 4
    for row in (0, 10, 48, 95):  # window row -> position row + 2
        assert scores["dna"][row + 2] == pytest.approx(derivative("dna", row), rel=1e-4,
                                                       abs=1e-9)
    rna = scores["rna"]
    for token, (start, end) in ((1, (0, 6)), (6, (30, 36)), (7, (36, 37))):
        assert rna[start:end].sum() == pytest.approx(derivative("rna", token), rel=1e-4,
                                                     abs=1e-9)
        assert np.allclose(rna[start:end], rna[start])  # a 6-mer's score split evenly
    for residue in (0, 5, 11):  # token 0 is <cls>
        assert scores["protein"][residue] == pytest.approx(derivative("protein", residue + 1),
                                                           rel=1e-4, abs=1e-9)
    assert all(np.abs(values).max() > 0 for values in scores.values())


def test_ism_of_an_isoformer_equals_predicting_each_mutant_whole(tiny_run):
    """Mutants share the other modalities' encoder states: the deltas are those of mutants
    predicted from scratch."""
    model = Run.open(tiny_run).load_model().eval()
    predictor = Predictor(model)
    mean = Target.resolve(TISSUES, None)
    reference = mean.select(predictor.predict([ISOFORMER_RECORD], 1))[0]
    for modality, span in (("dna", (40, 43)), ("rna", (0, 3)), ("protein", (2, 4))):
        delta, shared_reference = ism_scores(predictor, ISOFORMER_RECORD, modality, mean, span,
                                             batch_size=4)
        assert shared_reference == pytest.approx(reference, abs=1e-5)
        key, alphabet = SEQUENCE_KEYS[modality], MUTATION_ALPHABETS[modality]
        sequence = ISOFORMER_RECORD[key]
        for position in range(*span):
            mutants = [{**ISOFORMER_RECORD, key: sequence[:position] + letter
                        + sequence[position + 1:]} for letter in alphabet]
            direct = mean.select(predictor.predict(mutants, 8)) - reference
            np.testing.assert_allclose(delta[position], direct, rtol=1e-4, atol=2e-6)
        assert np.nanmax(np.abs(delta)) > 1e-5  # the model reads every modality


def test_attribute_command_on_an_isoformer_run(tiny_run, tmp_path, capsys):
    non_coding = {**ISOFORMER_RECORD, "transcript_id": "ENST10.1", PROTEIN_SEQUENCE: ""}
    source = _write_lines(tmp_path / "in.jsonl", [json.dumps(ISOFORMER_RECORD),
                                                  json.dumps(non_coding)])

    def attribute(*arguments: str) -> int:
        return main(["attribute", "--run", str(tiny_run), "--input", str(source),
                     "--device", "cpu", "--no-progress", *arguments])

    assert attribute("--modality", "dna", "--method", "saliency", "--out",
                     str(tmp_path / "dna")) == 0
    dna = np.load(tmp_path / "dna" / "attributions.npz")
    assert dna["record_ids"].tolist() == ["ENST9.1", "ENST10.1"]
    # The default span is the model's 96-bp window of the 100-bp record: 2 .. 97.
    assert dna["span_starts"].tolist() == [2, 2] and dna["span_ends"].tolist() == [98, 98]
    assert np.isnan(dna["scores/0"][[0, 1, 98, 99]]).all()
    assert np.isfinite(dna["scores/0"][2:98]).all()
    assert "ism/0" not in dna.files
    assert attribute("--modality", "protein", "--method", "ism", "--span", "0:2",
                     "--batch-size", "8", "--out", str(tmp_path / "protein")) == 0
    assert "1 of 2 records attributed (skipped: no protein_sequence 1)" in capsys.readouterr().out
    protein = np.load(tmp_path / "protein" / "attributions.npz")
    assert protein["ism/0"].shape == (12, 20) and np.isfinite(protein["ism/0"][:2]).all()
    assert np.isnan(protein["ism/0"][2:]).all()
    summary = json.loads((tmp_path / "protein" / "summary.json").read_text())
    assert summary["skipped"] == {"no protein_sequence": 1} and summary["device"] == "cpu"
    assert (tmp_path / "protein" / "ENST9.1.png").is_file()


# ---- against a simulation's truth ----


def _softplus(x: float) -> float:
    return float(np.log1p(np.exp(x)))  # the rules' log(1 + TPM) of a log TPM


# Two tissues. Log TPM of the record below: tissue A = -1 (one ATTTA) + 0.4 (charge 0.1,
# standardised 0.2, weight 2) = -0.6; tissue B = +1 (one promoter motif).
HAND_RULES = ExpressionRules(
    tissues=["A", "B"], intercept=0.0, promoter_region=(-30, -10),
    promoter_motifs=[Motif("tf", "TGACTAA", [0.0, 1.0], both_strands=True)],
    rna_motifs=[Motif("are", "ATTTA", [-1.0, 0.0], both_strands=False)],
    rna_length_weights=[0.0, 0.0],
    protein_features=[ProteinFeature("charge", [2.0, 0.0], center=0.0, scale=0.5)],
    noncoding_offset=0.0, gene_sd=0.0, gene_tissue_sd=0.0, sample_log_sd=0.0,
)
HAND_RECORD = {  # 64-bp window, TSS at 32: the promoter region is [2, 22), the motif at 10
    DNA_SEQUENCE: "C" * 10 + "TGACTAA" + "C" * 47,
    RNA_SEQUENCE: "GGATTTAGGCCC",
    PROTEIN_SEQUENCE: "KAAAAAAAAA",
}


def test_truth_ism_is_the_rules_expression_of_every_mutant():
    """Alt minus ref of the rules' log(1 + TPM), mean over the two tissues, by hand."""
    f, gene = _softplus, np.zeros(2)
    ref_a = f(-0.6)
    letters = MUTATION_ALPHABETS["protein"]
    protein = attribution_truth.truth_ism("protein", HAND_RECORD, (0, 10), HAND_RULES, gene)
    # K -> D or E: charge -0.1, tissue A -1.4; K -> R: unchanged; K -> any other: charge 0, -1.0.
    assert protein[0, letters.index("D")] == pytest.approx((f(-1.4) - ref_a) / 2, abs=1e-6)
    assert protein[0, letters.index("R")] == 0
    assert protein[0, letters.index("A")] == pytest.approx((f(-1.0) - ref_a) / 2, abs=1e-6)
    # A -> K: charge 0.2, tissue A -0.2; A -> D: charge 0, -1.0; A -> G: unchanged. Every A alike.
    for position in range(1, 10):
        assert protein[position, letters.index("K")] == pytest.approx((f(-0.2) - ref_a) / 2,
                                                                      abs=1e-6)
        assert protein[position, letters.index("D")] == pytest.approx((f(-1.0) - ref_a) / 2,
                                                                      abs=1e-6)
        assert protein[position, letters.index("G")] == 0 == protein[position, 0]  # 0: A itself
    rna = attribution_truth.truth_ism("rna", HAND_RECORD, (0, 12), HAND_RULES, gene)
    broken = (f(0.4) - ref_a) / 2  # every change inside ATTTA (RNA 2-6) loses the motif
    np.testing.assert_allclose(rna[2:7][rna[2:7] != 0], broken, atol=1e-6)
    assert (np.count_nonzero(rna[2:7], axis=1) == 3).all() and not rna[[0, 1, *range(7, 12)]].any()
    scores = attribution_truth.truth_ism_scores("dna", HAND_RECORD, (0, 64), HAND_RULES, gene)
    lost = (f(0.0) - f(1.0)) / 2  # tissue B loses its motif (window 10-16)
    np.testing.assert_allclose(scores[10:17], -lost, atol=1e-6)
    assert not scores[:10].any() and not scores[17:].any()  # outside the motif, or the region


def test_compare_ratio_and_correlation():
    scores = np.array([np.nan, 2.0, -2.0, 1.0, 0.5, np.nan])
    truth = np.array([np.nan, 1.0, -1.0, 0.5, 0.25, np.nan])
    signal = np.array([False, True, True, False, False, False])
    found = attribution_truth.compare(scores, truth, signal, (1, 5))
    assert found["ratio"] == pytest.approx(2.0 / 0.75) and found["r"] == pytest.approx(1.0)
    assert found["n_signal"] == 2 and found["n_positions"] == 4
    blind = attribution_truth.compare(np.zeros(6), truth, signal, (1, 5))
    assert blind["ratio"] is None and blind["r"] is None  # nothing moves: undefined, not NaN


@pytest.fixture(scope="module")
def protein_baseline_on_a_study(tmp_path_factory) -> tuple[Run, Path]:
    """A protein-only k-mer baseline fitted on a 300-gene simulated study (seconds)."""
    root = tmp_path_factory.mktemp("simulated")
    study = root / "study"
    simulate_study(study, n_genes=300, seed=2)
    build_dataset(fasta=study / "genome.fa", gtf=study / "annotation.gtf",
                  tpm=study / "transcript_tpm.gct.gz", samples=study / "sample_attributes.txt",
                  out=root / "dataset", dna_length=1024, test_fraction=0.1, progress=False)
    return fit_baseline(root / "dataset", root / "kmer", modalities=["protein"]), root


def _protein_ism_against_truth(run: Run, root: Path, n_proteins: int, max_residues: int
                               ) -> list[dict]:
    """`attribution_truth.compare` of the run's protein ISM on the first held-out proteins with
    the rules' own ISM (the study's noise-free expression of every mutant)."""
    truth = json.loads((root / "study" / "truth.json").read_text())
    rules = ExpressionRules.from_json(truth["rules"])
    predictor = Predictor(run.load_model())
    chosen = attribution_truth.cases(
        "protein", attribution_truth.held_out_records(root / "dataset", run.dna_length), rules,
        n_proteins, protein_span=max_residues)
    return [attribution_truth.attribute_case(predictor, case, "protein", rules, truth)[1]
            for case in chosen]


def test_ism_peaks_on_the_protein_feature_a_fitted_model_learned(protein_baseline_on_a_study):
    """The study's rules score protein charge and cysteine share; on held-out proteins the ISM of
    a k-mer baseline fitted to the study correlates with the rules' own ISM and is larger on the
    residues the rules count than on the others."""
    run, root = protein_baseline_on_a_study
    found = _protein_ism_against_truth(run, root, n_proteins=6, max_residues=1000)
    # Measured: r 0.63-0.82, ratio 1.7-2.6 (a model blind to the feature: r ~ 0, ratio ~ 1).
    assert min(row["r"] for row in found) > 0.5
    assert min(row["ratio"] for row in found) > 1.4


@pytest.mark.slow
def test_ism_peaks_on_the_protein_feature_a_trained_isoformer_learned(
        protein_baseline_on_a_study, tmp_path):
    """The same with a protein-only tiny IsoFormer trained for 4 epochs (~40 s)."""
    from isoformer.training.fit import train

    _, root = protein_baseline_on_a_study
    run = train(root / "dataset", "tiny", tmp_path / "protein", modalities=["protein"],
                max_epochs=4, seed=0, progress=False)
    found = _protein_ism_against_truth(run, root, n_proteins=4, max_residues=60)
    # Measured: r 0.79-0.89, ratio 2.5-3.1.
    assert min(row["r"] for row in found) > 0.6
    assert min(row["ratio"] for row in found) > 1.8
