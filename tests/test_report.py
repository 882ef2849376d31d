"""The HTML report: self-contained, complete, rendered by a real browser, and clear errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import hlae
from hlae.cli import main
from hlae.report import ReportMismatchError, build_report

PARAMS = dict(latent_dim=3, hidden_size=8, max_epochs=3, batch_size=8, random_state=0)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]
# Added to a copy of the page: after loading, write how many images decoded into the DOM.
COUNT_IMAGES = (
    "<script>window.addEventListener('load', () => {const im = [...document.images];"
    "document.body.setAttribute('data-images', im.length);"
    "document.body.setAttribute('data-loaded', "
    "im.filter(i => i.complete && i.naturalWidth > 0).length);});</script>"
)


def table(n=16, seed=0, features=("a", "b", "c")):
    """A long table of two kinds of sequence, with a label column."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        T = int(rng.integers(12, 24))
        freq = 0.2 if i % 2 else 0.6
        x = np.sin(freq * np.arange(T)[:, None] + np.arange(len(features))) + 0.1 * rng.normal(
            size=(T, len(features))
        )
        frame = pd.DataFrame(x, columns=list(features))
        frame.insert(0, "step", np.arange(T))
        frame.insert(0, "id", f"s{i}")
        frame["kind"] = "slow" if i % 2 else "fast"
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


DOCTOR = {
    "findings": [
        {
            "code": "lr-too-high",
            "severity": "warning",
            "stage": "dynamics",
            "message": "The loss rose within 50 steps at lr=0.003 <tag>.",
            "evidence": {"lr": 0.003},
            "fix": "Use lr=0.0005.",
        }
    ],
    "skipped": ["gradient probe: too little time"],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A fitted run directory, its data file and a doctor report next to the model."""
    root = tmp_path_factory.mktemp("report")
    frame = table()
    frame.to_csv(root / "data.csv", index=False)
    model = hlae.HierarchicalAutoencoder(**PARAMS).fit(frame.drop(columns="kind"))
    model.save(root / "run" / "model")
    (root / "run" / "doctor").mkdir()
    (root / "run" / "doctor" / "report.json").write_text(json.dumps(DOCTOR))
    return root, model


def images(page):
    return re.findall(r"<img src='([^']*)'", page)


def test_page_is_complete_and_self_contained(run):
    root, model = run
    frame = table()
    labels = frame.groupby("id", sort=False)["kind"].first().to_dict()
    page = build_report(model, frame.drop(columns="kind"), labels=labels, doctor=DOCTOR)
    for heading in ("Loss curves", "Reconstructions", "Embeddings", "Reconstruction errors"):
        assert f"<h2>{heading}</h2>" in page
    sources = images(page)
    assert len(sources) == 4
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    # the doctor's findings, escaped; labels were used
    assert "lr-too-high" in page and "Use lr=0.0005." in page and "&lt;tag&gt;" in page
    assert "coloured by label" in page and "2 distinct" in page


def test_mismatched_model_and_data_is_a_clear_error(run, tmp_path):
    root, model = run
    fewer = table(features=("a", "b")).drop(columns="kind")
    with pytest.raises(ReportMismatchError, match="does not match the model.*3"):
        build_report(model, fewer)
    renamed = table(features=("a", "b", "d")).drop(columns="kind")
    with pytest.raises(ReportMismatchError, match=r"trained on features \['a', 'b', 'c'\]"):
        build_report(model, renamed)
    with pytest.raises(ValueError, match="one label per sequence"):
        build_report(model, table().drop(columns="kind"), labels=[0, 1])
    # on the command line: exit code 2 and the message
    renamed.to_csv(tmp_path / "other.csv", index=False)
    out = tmp_path / "r.html"
    assert main(["report", str(root / "run"), str(tmp_path / "other.csv"), "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_report_renders_in_chromium_with_every_image(run, tmp_path, capsys):
    root, _ = run
    out = tmp_path / "report.html"
    code = main(
        [
            "report",
            str(root / "run"),
            str(root / "data.csv"),
            "--labels",
            "kind",
            "--out",
            str(out),
        ]  # fmt: skip
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "doctor findings from" in printed  # found next to the model
    page = out.read_text()
    assert "lr-too-high" in page and "coloured by label" in page

    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", COUNT_IMAGES + "</body>"))
    result = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            checked.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = result.stdout
    total = re.search(r'data-images="(\d+)"', dom)
    loaded = re.search(r'data-loaded="(\d+)"', dom)
    assert total and loaded, f"the page did not finish loading: {result.stderr[-500:]}"
    assert int(total.group(1)) == 4
    assert int(loaded.group(1)) == 4
