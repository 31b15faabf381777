"""report.html: self-contained, complete, and really rendered by a browser (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from torchslim.bench._measure import Latency, Metrics
from torchslim.pipeline import write_html
from torchslim.report import Candidate, Report, environment, load_report, write_report
from torchslim.report._html import render_html


def _metrics(acc: float, size: int, p50: float, runtime: str = "eager") -> Metrics:
    return Metrics(accuracy=acc, size_bytes=size, params=size // 4, macs=1000, runtime=runtime, peak_memory_bytes=2**20,
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
    for needle in ("p50 ms, batch 1", "p50 ms, batch 32", "samples/s", "peak memory", "within budget", "ExportError",
                   "time budget", "no speed-up at batch 1 over the baseline (x0.50)", "masked/unstructured sparsity",
                   "Baseline and environment", "accuracy budget (", "chosen (latency): pruned-distilled-int8",
                   "per-layer sensitivity", "torchslim.load(&#x27;candidates/pruned-distilled-int8/model.pt2&#x27;)",
                   "Ship <b>pruned-distilled-int8</b>: 2.0x faster at batch 1, 8.3x smaller, 0.80 points lost"):
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


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); CI installs it in .ci/run")
    write_report(sample_report(), tmp_path)
    page = write_html(load_report(tmp_path), tmp_path)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1500,2600"]
    url = page.resolve().as_uri()
    dom = subprocess.run([browser, *flags, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert re.search(r'<table id="candidates">', html)
    assert len(re.findall(r'<tr class="[^"]*" data-name=', html)) == 6  # baseline + 5 candidates
    assert re.search(r'<tr class="best ok" data-name="pruned-distilled-int8"', html)
    for plot in ("plot-latency", "plot-size", "plot-sensitivity"):
        block = html.split(f'id="{plot}"', 1)[1][:400]
        assert "<svg" in block, plot
    assert "accuracy vs latency" in html and "p50 latency at batch 1" in html  # SVG text survived as text

    shot = tmp_path / "shot.png"
    run = subprocess.run([browser, *flags, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1500, 2600)
    colors = image.resize((300, 520)).getcolors(maxcolors=1 << 16) or []
    assert len(colors) > 50  # a real page with tables and plots, not a blank or error screen
    # The highlighted best row's background (#fff8e1) and the best star (#f9a825) are painted.
    pixels = {rgb for _count, rgb in image.getcolors(maxcolors=1 << 24)}
    assert (0xFF, 0xF8, 0xE1) in pixels and (0xF9, 0xA8, 0x25) in pixels
