"""The README's Python snippet, copied verbatim from README.md and run as a script.

It runs with ``python`` in a folder laid out as the repository root (its ``samples`` is the
repository's, linked), so that what it writes (``out/``) lands in a temporary folder and not
in the checkout. Workers are used, so the script is also the proof that its
``if __name__ == "__main__":`` guard is where workers need it.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import datasets

from longrvos_data import load
from longrvos_data.eval import evaluate

REPO = Path(__file__).resolve().parent.parent


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    runnable = [b for b in blocks if 'if __name__ == "__main__":' in b]
    assert len(runnable) == 1, "the README has one runnable Python snippet (the others need data or a model)"
    return runnable[0]


def test_the_readme_snippet_runs_on_the_samples_and_prints_what_the_library_computes(tmp_path):
    snippet = readme_snippet()
    assert 'if __name__ == "__main__":' in snippet and "video.has_masks" in snippet
    (tmp_path / "samples").symlink_to(REPO / "samples")
    (tmp_path / "snippet.py").write_text(snippet, encoding="utf-8")
    res = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr

    lr = load(REPO / "samples" / "long_rvos")
    assert [s.has_masks for s in (next(iter(lr["test"])), next(iter(lr["valid"])))] == [False, True]
    mevis = load(REPO / "samples" / "mevis")
    report = evaluate(REPO / "samples" / "long_rvos", REPO / "samples" / "predictions" / "long_rvos_valid",
                      protocol="long_rvos", split="valid")
    assert res.stdout.splitlines() == [f"{name} {len(reader)} video(s)" for name, reader in lr.splits.items()] + [
        str({name: len(reader) for name, reader in mevis.splits.items()}), str(report.overall)]

    hf = datasets.load_dataset(str(tmp_path / "out" / "mevis_hf"), "expressions")
    assert {split: hf[split].num_rows for split in hf} == {
        name: sum(len(v.expressions) for v in reader) for name, reader in mevis.splits.items()}
