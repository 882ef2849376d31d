"""AnomalyDetector: planted anomalies found where they are, thresholds, persistence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

import hlae
from hlae.anomaly import AnomalyDetector, load_detector
from hlae.cli import main
from hlae.datasets import plant_anomalies
from hlae.estimator import HierarchicalAutoencoder
from hlae.exceptions import InputError, ModelFileError, ParameterError

pytestmark = pytest.mark.filterwarnings("ignore::hlae.exceptions.TrainingWarning")

FAST = dict(latent_dim=4, hidden_size=16, max_epochs=40, patience=40, random_state=0)
KINDS = ("spike", "level_shift", "frozen")
WINDOW = 40


def stream(T: int, seed: int) -> np.ndarray:
    """Two related rhythms with a little noise: a long recording of normal behaviour."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    x = np.sin(2 * np.pi * t / 20 + np.array([0.0, 1.0])) + 0.5 * np.sin(2 * np.pi * t / 7)
    return (x + 0.05 * rng.normal(size=x.shape)).astype(np.float32)


def pieces(n: int, seed: int) -> list[np.ndarray]:
    """Sequences of 80 to 120 steps cut at random from a long recording."""
    rng = np.random.default_rng(seed)
    recording = stream(3000, seed)
    lengths = rng.integers(80, 121, size=n)
    return [recording[s : s + T] for T in lengths for s in [int(rng.integers(0, 3000 - T))]]


@pytest.fixture(scope="module")
def collection():
    return pieces(60, seed=0), pieces(30, seed=1)


@pytest.fixture(scope="module")
def collection_detector(collection):
    return AnomalyDetector(contamination=0.1, **FAST).fit(collection[0])


@pytest.fixture(scope="module")
def stream_detector():
    return AnomalyDetector(window=WINDOW, **FAST).fit(stream(1200, seed=0))


@pytest.mark.parametrize("kind", KINDS)
def test_planted_anomalies_in_a_collection_are_found_at_their_steps(
    collection_detector, collection, kind
):
    planted, labels, step_labels = plant_anomalies(
        collection[1], kind=kind, fraction=0.25, random_state=1
    )
    scores = collection_detector.decision_function(planted)
    # a frozen stretch is the subtle one: errors that are too small, not too large
    assert roc_auc_score(labels, scores) > (0.8 if kind == "frozen" else 0.95)

    # inside an anomalous sequence, the highest step score sits in the planted stretch
    steps = collection_detector.score_steps(planted)
    hits = [
        bool(step_labels[i][max(0, steps[i].argmax() - 1) : steps[i].argmax() + 2].any())
        for i in np.flatnonzero(labels)
    ]
    assert np.mean(hits) >= 0.8, hits


@pytest.mark.parametrize("kind", KINDS)
def test_planted_anomaly_in_a_stream_is_found_at_its_steps(stream_detector, kind):
    [recording], _, [truth] = plant_anomalies(
        [stream(1000, seed=2)], kind=kind, fraction=1.0, random_state=3
    )
    scores = stream_detector.decision_function(recording)
    assert scores.shape == (1000,)
    assert roc_auc_score(truth, scores) > 0.9

    # the peak lies in the stretch, give or take the smoothing width
    where = np.flatnonzero(truth)
    margin = stream_detector._smoothing()
    assert where[0] - margin <= scores.argmax() <= where[-1] + margin

    # the anomalous steps are flagged; elsewhere, about `contamination` of the steps
    flagged = stream_detector.predict(recording)
    assert flagged[where].mean() >= 0.8
    far = np.ones(len(truth), bool)
    far[max(0, where[0] - WINDOW) : where[-1] + WINDOW] = False
    assert flagged[far].mean() < 0.25


def test_stream_accepts_one_array_and_several_recordings(stream_detector):
    one = stream(300, seed=4)
    assert stream_detector.decision_function(one).shape == (300,)
    two = [one, stream(250, seed=5)]
    steps = stream_detector.score_steps(two)
    assert [len(s) for s in steps] == [300, 250]
    np.testing.assert_allclose(np.concatenate(steps), stream_detector.decision_function(two))


def test_threshold_follows_contamination(collection_detector, collection):
    train = collection[0]
    thresholds = []
    for c in (0.05, 0.1, 0.2, 0.5):
        detector = AnomalyDetector.from_autoencoder(
            collection_detector.autoencoder_, train, contamination=c
        )
        assert abs(detector.labels_.mean() - c) <= 1.5 / len(train)
        np.testing.assert_array_equal(detector.predict(train), detector.labels_)
        thresholds.append(detector.threshold_)
    assert np.all(np.diff(thresholds) < 0)  # more contamination, lower threshold


# A one-step spike is what the largest step error and the profile distance are for; the
# mean error spreads it over a hundred steps, among sequences whose ordinary errors differ
# by more than that, so it only has to rank spikes clearly above chance.
@pytest.mark.parametrize("score,auc", [("mean", 0.7), ("max", 0.9), ("mahalanobis", 0.9)])
def test_scores_rank_planted_spikes_first(collection_detector, collection, score, auc):
    detector = AnomalyDetector.from_autoencoder(
        collection_detector.autoencoder_, collection[0], score=score
    )
    planted, labels, _ = plant_anomalies(collection[1], "spike", 0.25, random_state=7)
    assert roc_auc_score(labels, detector.decision_function(planted)) > auc


def test_predict_proba(collection_detector, collection):
    scores = collection_detector.decision_function(collection[1])
    for method in ("linear", "rank"):
        proba = collection_detector.predict_proba(collection[1], method=method)
        assert proba.shape == (len(collection[1]), 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert ((proba >= 0) & (proba <= 1)).all()
        order = np.argsort(scores)
        assert np.all(np.diff(proba[order, 1]) >= 0)  # monotone in the score
    with pytest.raises(ParameterError):
        collection_detector.predict_proba(collection[1], method="softmax")


@pytest.mark.parametrize("which", ["collection", "stream"])
def test_saved_detector_loads_with_identical_scores(
    collection_detector, stream_detector, collection, tmp_path, which
):
    detector = collection_detector if which == "collection" else stream_detector
    data = collection[1] if which == "collection" else stream(400, seed=6)
    detector.save(tmp_path / "det")
    loaded = hlae.AnomalyDetector.load(tmp_path / "det")
    assert loaded.get_params() == detector.get_params()
    assert loaded.threshold_ == detector.threshold_
    np.testing.assert_array_equal(loaded.decision_scores_, detector.decision_scores_)
    np.testing.assert_array_equal(loaded.labels_, detector.labels_)
    np.testing.assert_array_equal(loaded.decision_function(data), detector.decision_function(data))
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))


def test_loading_something_else_is_a_clear_error(collection_detector, tmp_path):
    collection_detector.autoencoder_.save(tmp_path / "ae")
    with pytest.raises(ModelFileError, match="not a saved hlae anomaly detector"):
        load_detector(tmp_path / "ae")
    collection_detector.save(tmp_path / "det")
    (tmp_path / "det" / "detector.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="damaged"):
        load_detector(tmp_path / "det")


def test_scikit_learn_parameters_and_clone():
    detector = AnomalyDetector(contamination=0.05, window=30, latent_dim=3, max_epochs=2)
    assert detector.autoencoder_params == {"latent_dim": 3, "max_epochs": 2}
    copy = clone(detector)
    assert copy.get_params() == detector.get_params()
    assert copy.autoencoder_params is not detector.autoencoder_params
    copy.set_params(autoencoder_params={"latent_dim": 5}, stride=5)
    assert copy.autoencoder_params == {"latent_dim": 5} and copy.stride == 5
    assert detector.autoencoder_params["latent_dim"] == 3


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if an autoencoder starts training."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(HierarchicalAutoencoder, "fit", refuse)


@pytest.mark.parametrize("contamination", [0, 0.0, -0.1, 0.51, 1.0, "0.1", None, True])
def test_contamination_out_of_range_is_refused_before_training(no_training, contamination):
    with pytest.raises(ParameterError, match="contamination"):
        AnomalyDetector(contamination=contamination).fit(stream(100, 0)[None].repeat(12, 0))


def test_stream_shorter_than_a_window_is_refused_before_training(no_training):
    with pytest.raises(InputError, match="longer than every sequence"):
        AnomalyDetector(window=200).fit(stream(150, seed=0))
    with pytest.raises(InputError, match="fewer than one window"):
        AnomalyDetector(window=200).fit([stream(500, seed=0), stream(150, seed=1)])


def test_window_longer_than_every_sequence_is_refused_before_training(no_training, collection):
    with pytest.raises(InputError, match="window=130 is longer than every sequence"):
        AnomalyDetector(window=130).fit(collection[0])


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(window=1), "window"),
        (dict(window=10, stride=11), "stride"),
        (dict(stride=5), "stream mode"),
        (dict(score="median"), "score"),
        (dict(hidden_units=4), "Unknown autoencoder parameter"),
        (dict(latent_dim=0), "latent_dim"),
    ],
)
def test_bad_parameters_are_refused_before_training(no_training, params, match):
    with pytest.raises(ParameterError, match=match):
        AnomalyDetector(**params).fit(stream(100, 0)[None].repeat(12, 0))


def test_one_array_in_collection_mode_points_to_stream_mode(no_training):
    with pytest.raises(InputError, match="set window"):
        AnomalyDetector().fit(stream(500, seed=0))


def test_scoring_a_short_stream_is_refused(stream_detector):
    with pytest.raises(InputError, match=f"window={WINDOW}"):
        stream_detector.decision_function(stream(WINDOW - 1, seed=0))
    with pytest.raises(InputError, match="features"):
        stream_detector.decision_function(np.zeros((100, 3), dtype=np.float32))


def _long_table(seqs: list[np.ndarray], path) -> None:
    frames = [
        pd.DataFrame(x, columns=["a", "b"]).assign(id=f"s{i}", step=np.arange(len(x)))
        for i, x in enumerate(seqs)
    ]
    pd.concat(frames).to_csv(path, index=False)


def test_plain_autoencoder_scored_from_the_command_line(collection_detector, collection, tmp_path):
    planted, labels, _ = plant_anomalies(collection[1], "spike", 0.25, random_state=1)
    _long_table(planted, tmp_path / "data.csv")
    _long_table(collection[0], tmp_path / "normal.csv")
    collection_detector.autoencoder_.save(tmp_path / "ae")
    out = tmp_path / "scores.csv"
    args = ["score", str(tmp_path / "ae"), str(tmp_path / "data.csv"), "--out", str(out)]

    # calibrated on the data itself: contamination 0.1 of it is labelled
    assert main(args) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["id", "score", "label"]
    assert list(scores["id"]) == [f"s{i}" for i in range(len(planted))]
    assert scores["label"].sum() == 3

    # calibrated on normal data: the planted spikes stand out
    assert main(args + ["--reference", str(tmp_path / "normal.csv")]) == 0
    scores = pd.read_csv(out)
    assert roc_auc_score(labels, scores["score"]) > 0.95
    assert scores["label"][labels == 1].mean() > 0.8


def test_fit_detector_and_score_a_stream_from_the_command_line(tmp_path, capsys):
    [recording], _, [truth] = plant_anomalies(
        [stream(600, seed=8)], "level_shift", 1.0, random_state=0
    )
    pd.DataFrame({"timestamp": np.arange(1200), "x0": stream(1200, 0)[:, 0]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"timestamp": np.arange(600), "x0": recording[:, 0], "is_anomaly": truth}).to_csv(
        tmp_path / "test.csv", index=False
    )
    det = tmp_path / "det"
    code = main(
        ["fit-detector", str(tmp_path / "train.csv"), "--out", str(det), "--window", "40"]
        + ["--score", "mean", "--latent-dim", "3", "--hidden-size", "8", "--max-epochs", "3"]
    )
    assert code == 0
    assert json.loads((det / "detector.json").read_text())["params"]["window"] == 40

    out, png = tmp_path / "steps.csv", tmp_path / "scores.png"
    args = ["score", str(det), str(tmp_path / "test.csv"), "--out", str(out), "--steps"]
    args += ["--label-column", "is_anomaly", "--plot", str(png)]
    assert main(args) == 0
    steps = pd.read_csv(out)
    assert list(steps.columns) == ["recording", "step", "score", "label"]
    assert len(steps) == 600
    assert png.stat().st_size > 10_000

    # a saved detector keeps its window; only its threshold may be re-set
    capsys.readouterr()
    assert main(args[:5] + ["--window", "20"]) == 2
    assert "cannot change a saved detector" in capsys.readouterr().err
    assert main(args[:5] + ["--contamination", "0.7"]) == 2
