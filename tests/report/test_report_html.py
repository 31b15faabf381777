"""report.html: self-contained, complete, and really rendered by a browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import OrderedDict
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from torchslim.bench._measure import Latency, Metrics
from torchslim.pipeline import write_html
from torchslim.report import Candidate, Report, environment, load_report, write_report
from torchslim.report._html import render_html


def _metrics(acc: float, size: int, p50: float, runtime: str = "eager") -> Metrics:
    return Metrics(accuracy=acc, size_bytes=size, params=size // 4, macs=1000, runtime=runtime, peak_memory_bytes=2**20,
                   cold_start_ms=size / 1000,
                   latency_ms={"1": Latency(p50=p50, p95=p50 * 1.2, cv=0.05), "32": Latency(p50=p50 * 8, p95=p50 * 9, cv=0.04)},
                   throughput_per_s=32 / (p50 * 8 / 1e3))


def sample_report() -> Report:
    candidates = [
        Candidate(name="int8-dynamic", steps=["quantize(method=dynamic)"], within_budget=True, artifact="candidates/int8-dynamic/model.pt2",
                  metrics=_metrics(0.975, 30_000, 0.08)),
        Candidate(name="pruned-distilled-int8", steps=["prune(method=channel, ratio=0.5)", "distill(epochs=5)", "quantize(method=static)"],
                  within_budget=True, artifact="candidates/pruned-distilled-int8/model.pt2", metrics=_metrics(0.972, 12_000, 0.05, "compile")),
        Candidate(name="deep-compression", steps=["prune(method=magnitude, ratio=0.9)", "share(bits=5)", "encode(huffman)"],
                  within_budget=False, artifact="candidates/deep-compression/model.tslim", metrics=_metrics(0.90, 9_000, 0.2, "tslim"),
                  notes=["masked/unstructured sparsity: dense kernels", "no speed-up at batch 1 over the baseline (x0.50)"]),
        Candidate(name="onnx-int8", steps=["export(format=onnx, quantize=dynamic)"], status="failed", within_budget=False,
                  error="ExportError: torch.onnx.export could not capture the model"),
        Candidate(name="bf16-compile", steps=["quantize(method=bf16)"], status="skipped", within_budget=False,
                  error="not run: the time budget of 60 s was spent"),
    ]
    return Report(torchslim_version="0.1.0", environment=environment("cpu"), model="digits-cnn", data="digits",
                  baseline=Candidate(name="baseline", within_budget=True, artifact="baseline.pt2", metrics=_metrics(0.98, 100_000, 0.1)),
                  candidates=candidates, best="pruned-distilled-int8", recipe="default",
                  sensitivity={"ratio": 0.5, "split": "val", "metric": "accuracy",
                               "layers": [{"name": "conv1", "params": 288, "accuracy_drop": 3.5},
                                          {"name": "fc", "params": 640, "accuracy_drop": -0.2}]})


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_is_complete_and_self_contained(tmp_path):
    report = sample_report()
    page = render_html(report)
    assert "http://" not in page and "https://" not in page  # no resource can be fetched from anywhere
    parser = _Collect()
    parser.feed(page)
    tags = parser.tags
    assert not [t for t, a in tags if t in ("script", "link", "iframe")]
    assert not [a for t, a in tags if t == "img" and not a.get("src", "").startswith("data:")]
    rows = [a for t, a in tags if t == "tr" and "data-name" in a]
    assert [r["data-name"] for r in rows] == ["baseline"] + [c.name for c in report.candidates]
    assert [r for r in rows if "best" in r["class"].split()][0]["data-name"] == "pruned-distilled-int8"
    assert sum(1 for t, _ in tags if t == "svg") == 3  # two Pareto plots + sensitivity
    assert "<th title=\"load the artifact and run its first call\">cold start ms</th>" in page
    assert '<tr class="best ok" data-name="pruned-distilled-int8">' in page
    assert page.split('data-name="pruned-distilled-int8">', 1)[1].count("<td>12</td>") == 1  # its cold start, in the table
    for needle in ("p50 ms, batch 1", "p50 ms, batch 32", "samples/s", "peak memory", "within budget", "ExportError",
                   "time budget", "no speed-up at batch 1 over the baseline (x0.50)", "masked/unstructured sparsity",
                   "Baseline and environment", "accuracy budget (", "chosen (latency): pruned-distilled-int8",
                   "per-layer sensitivity", "torchslim.load(&#x27;candidates/pruned-distilled-int8/model.pt2&#x27;)",
                   "Ship <b>pruned-distilled-int8</b>: 2x faster at batch 1, 8.33x smaller, 0.80 points lost"):
        assert needle in page, needle
    # Notes are said once, folded, grouped by kind.
    assert page.count("masked/unstructured sparsity") == 1
    assert page.count("no speed-up at batch 1 over the baseline (x0.50)") == 1
    details = page.split('id="cand-deep-compression"', 1)[1].split("</details></details>", 1)[0]
    assert '<details class="notes">' in details and "<h4>what the technique did</h4>" in details


def test_onnx_candidates_get_a_plain_onnxruntime_snippet():
    report = sample_report()
    report.candidates.append(Candidate(name="onnx-fp32", steps=["export(format=onnx)"], within_budget=True,
                                       artifact="candidates/onnx-fp32/model.onnx", metrics=_metrics(0.979, 90_000, 0.04, "onnxruntime")))
    page = render_html(report)
    section = page.split('id="cand-onnx-fp32"', 1)[1].split('<details class="candidate', 1)[0]
    assert "import onnxruntime as ort" in section and "ort.InferenceSession(&#x27;candidates/onnx-fp32/model.onnx&#x27;" in section
    assert "torchslim.load(" in section
    plain = section.split('class="snippet onnxruntime"', 1)[1].split("</pre>", 1)[0]
    assert "torchslim" not in plain and "torch" not in plain.replace("onnxruntime", "")
    other = page.split('id="cand-int8-dynamic"', 1)[1].split('<details class="candidate', 1)[0]
    assert "onnxruntime" not in other


def test_html_without_best_or_sensitivity(tmp_path):
    report = sample_report()
    report.best, report.sensitivity = None, None
    page = render_html(report)
    assert "No candidate stayed within the accuracy budget" in page
    assert page.count("<svg") == 2


def test_report_rerenders_from_json(tmp_path):
    report = sample_report()
    write_report(report, tmp_path)
    again = load_report(tmp_path)
    path = write_html(again, tmp_path)
    assert path == tmp_path / "report.html" and "pruned-distilled-int8" in path.read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# A real optimize run (fake steps, fake numbers: no training, no timing) whose candidates sit close
# together on both charts, so the label placement has a crowd to clear. name -> (accuracy,
# batch-1 p50 ms, bytes on disk).
CROWD = {"baseline": (0.975, 1.00, 120_000)}
CROWD.update({f"int8-variant-{i}": (0.972 - 0.0004 * i, 0.50 + 0.01 * i, 31_000 + 400 * i) for i in range(6)})
CROWD.update({"pruned-50-distilled": (0.9712, 0.52, 30_500), "pruned-70-distilled": (0.958, 0.41, 18_000),
              "deep-compression-90": (0.90, 1.30, 9_000), "fp16-compile": (0.975, 0.98, 60_000),
              "low-rank-0.25": (0.970, 0.51, 31_400), "onnx-fp32": (0.975, 0.30, 118_000)})


def _crowd_measure(fn, data, *, artifact, runtime, batch_sizes, device, reference=None, params=None, macs=None,
                   progress=None, **_kw):
    artifact = Path(artifact)
    name = artifact.parent.name if artifact.parent.parent.name == "candidates" else "baseline"
    acc, b1, size = CROWD[name]
    return Metrics(accuracy=acc, size_bytes=size, params=params or 1000, macs=macs, runtime=runtime,
                   latency_ms={str(b): Latency(p50=b1 * b ** 0.6, p95=b1 * b ** 0.6 * 1.15, cv=0.03) for b in batch_sizes},
                   throughput_per_s=max(batch_sizes) / (b1 * max(batch_sizes) ** 0.6) * 1e3, peak_memory_bytes=2**21)


@pytest.fixture(scope="module")
def crowded_run(tmp_path_factory) -> Path:
    from tests.pipeline.test_pipeline import FAKE_STEPS
    from torchslim.data import load_data
    from torchslim.pipeline import Goal, MeasureOptions, RunOptions, load_recipe, optimize

    torch.manual_seed(0)
    layers = OrderedDict(flatten=nn.Flatten(), features=nn.Sequential(OrderedDict(
        expand_projection_dense=nn.Linear(64, 48), activation=nn.ReLU(), squeeze_excite_bottleneck=nn.Linear(48, 32),
        activation2=nn.ReLU())), classifier_head_linear=nn.Linear(32, 10))
    names = [n for n in CROWD if n != "baseline"]
    recipe = {"sensitivity": {"ratio": 0.5},
              "candidates": [{"name": n, "steps": [{"scale": {"factor": 1.0}}],
                              **({"runtime": "onnxruntime"} if n.startswith("onnx") else {})} for n in names]}
    out = tmp_path_factory.mktemp("crowd") / "run"
    optimize(nn.Sequential(layers), load_data("digits"), load_recipe(recipe, step_table=FAKE_STEPS),
             goal=Goal(objective="size"), run=RunOptions(out=out, device="cpu"),
             measure=MeasureOptions(batch_sizes=(1, 32), measure_fn=_crowd_measure))
    return out


# Run in the page after it loads: what a person would see, measured by the browser's own layout.
_PROBE = """<script>
window.addEventListener("load", () => {
  const box = (e) => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  const r = {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth};
  r.charts = [...document.querySelectorAll("svg.plot-svg")].map((s) => [s.getAttribute("aria-label"), ...box(s)]);
  r.labels = [...document.querySelectorAll('g[id^="label-"]')].map((g) => [g.id, g.textContent.trim(), ...box(g)]);
  const sens = document.querySelector('svg[aria-label="sensitivity"]');
  r.layers = sens ? [...sens.querySelectorAll('g[id^="ytick_"] text')].map((t) =>
      [t.textContent.trim(), parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a, ...box(t)]) : [];
  r.sensitivity = sens ? box(sens) : null;
  const best = document.querySelector("details.candidate[open] pre.snippet");
  r.snippet = best ? best.textContent : null;
  r.openCandidate = document.querySelector("details.candidate[open]")?.id;
  r.badges = [...document.querySelectorAll("td.name .badge")].map((b) => { const td = b.closest("td");
      return [b.textContent, box(b), box(td), [...td.parentElement.children].filter((x) => x !== td).map(box)]; });
  const out = document.createElement("pre"); out.id = "probe"; out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
});
</script>"""


def _flags(width: int, height: int) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--window-size={width},{height}",
            "--virtual-time-budget=5000"]


def _intersect(a, b) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5


def _probe_page(browser: str, page: Path, tmp_path: Path, name: str) -> dict:
    probe = tmp_path / f"{name}.html"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run([browser, *_flags(1280, 800), f"--user-data-dir={tmp_path / ('profile-' + name)}", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    return json.loads(unescape(found.group(1)))


def _check_badges_stay_in_their_cell(browser: str, report, tmp_path: Path) -> None:
    """A winner of three objectives with a long name (as the edge search names them): its badges
    stay inside its cell and cover no other cell."""
    long_name = "pruned-distilled-onnx-int8-static.ratio-0.6516"
    old = report.winners["latency"]
    report.candidate(old).name = long_name
    report.winners = {o: (long_name if n == old else n) for o, n in report.winners.items()}
    report.winners.update(latency=long_name, throughput=long_name, balanced=long_name)
    report.best = long_name
    folder = tmp_path / "long-names"
    folder.mkdir()
    r = _probe_page(browser, write_html(report, folder), tmp_path, "badges")
    assert r["scrollWidth"] <= r["innerWidth"]
    assert sorted(b[0] for b in r["badges"] if b[0] != "best size") == ["best balanced", "best latency", "best throughput"]
    for text, badge, cell, others in r["badges"]:
        assert cell[0] - 0.5 <= badge[0] and badge[2] <= cell[2] + 0.5, (text, badge, cell)  # inside its cell
        for other in others:
            assert not _intersect(badge, other), (text, badge, other)


@pytest.mark.browser
@pytest.mark.slow
def test_report_reads_well_in_headless_chromium_at_1280(crowded_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); CI installs it in .ci/run")
    report = load_report(crowded_run)
    page = write_html(report, crowded_run)
    assert "<script" not in page.read_text()  # the report itself runs nothing; the probe goes in a copy
    r = _probe_page(browser, page, tmp_path, "probed")

    assert r["innerWidth"] == 1280 and r["scrollWidth"] <= r["innerWidth"]  # no horizontal scrolling
    assert {c[0] for c in r["charts"]} == {"pareto-latency", "pareto-size", "sensitivity"}
    for name, left, top, right, bottom in r["charts"]:
        assert right - left > 600 and bottom - top > 200, name  # rendered, and large
    # Every measured candidate and the baseline is labelled on both charts, and no two labels overlap.
    for axis in ("latency", "size"):
        labels = [x for x in r["labels"] if x[0].startswith(f"label-{axis}-")]
        assert sorted(x[1].split(" (")[0] for x in labels) == sorted(CROWD), axis  # "(90.0)": drawn on the floor
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                assert not _intersect(a[2:], b[2:]), (axis, a, b)
    # Every layer's name is there, in full, at a readable size, inside the chart and not overlapping.
    layer_names = [x["name"] for x in report.sensitivity["layers"]]
    assert sorted(x[0] for x in r["layers"]) == sorted(layer_names)
    for name, size, *b in r["layers"]:
        assert size >= 10 and b[0] >= r["sensitivity"][0] - 0.5, (name, size, b)
    for i, a in enumerate(r["layers"]):
        for b in r["layers"][i + 1:]:
            assert not _intersect(a[2:], b[2:]), (a, b)
    # The chosen winner's section is open with a snippet that loads its artifact.
    best = report.candidate(report.best)
    assert r["openCandidate"] == f"cand-{best.name}"
    assert "torchslim.load(" in r["snippet"] and best.artifact in r["snippet"]

    _check_badges_stay_in_their_cell(browser, report, tmp_path)

    shot = tmp_path / "report-1280x800.png"
    run = subprocess.run([browser, *_flags(1280, 800), f"--user-data-dir={tmp_path / 'profile-shot'}",
                          f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 800)
    assert len(image.resize((256, 160)).getcolors(maxcolors=1 << 16) or []) > 50  # a real page, not a blank one
