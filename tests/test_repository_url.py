"""The repository URL lives in one place (``resontech_nb.REPOSITORY_URL``): every copy in the README, pyproject.toml,
binder/ and the notebooks (first cell and Colab badges) is that one, and ``scripts/set_repository_url.sh`` moves
them all to a fork's URL at once."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import resontech_nb

REPO = Path(__file__).resolve().parents[1]
PLACES = ["resontech_nb/__init__.py", "README.md", "pyproject.toml", "binder/*", "notebooks/*.ipynb"]
# every form a link to the repository takes: plain/pip/git URLs, Colab's and Binder's badge links
SLUG = r"([A-Za-z0-9_.-]+/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)"
PATTERNS = [
    re.compile(r"github\.com/" + SLUG),
    re.compile(r"colab\.research\.google\.com/github/" + SLUG),
    re.compile(r"mybinder\.org/v2/gh/" + SLUG),
]


def _slugs(root: Path) -> dict[str, list[str]]:
    """Each file under ``root`` that should link to the repository -> the OWNER/REPO of every link in it."""
    found: dict[str, list[str]] = {}
    for place in PLACES:
        for path in sorted(root.glob(place)):
            text = path.read_text(encoding="utf-8")
            found[str(path.relative_to(root))] = [
                m.group(1).removesuffix(".git") for p in PATTERNS for m in p.finditer(text)
            ]
    return found


def _slug(url: str) -> str:
    return url.removeprefix("https://github.com/")


def test_every_copy_of_the_repository_url_is_the_authoritative_one():
    slugs = _slugs(REPO)
    wrong = {path: sorted(set(s) - {_slug(resontech_nb.REPOSITORY_URL)}) for path, s in slugs.items()}
    assert not {p: w for p, w in wrong.items() if w}, (
        f"these differ from resontech_nb.REPOSITORY_URL ({resontech_nb.REPOSITORY_URL}): "
        f"{ {p: w for p, w in wrong.items() if w} }; run bash scripts/set_repository_url.sh URL"
    )
    for must_link in ["README.md", "pyproject.toml", *(f"notebooks/{p.name}" for p in REPO.glob("notebooks/*.ipynb"))]:
        assert slugs.get(must_link), f"{must_link} has no link to the repository"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "colab.research.google.com/github/" in readme and "mybinder.org/v2/gh/" in readme


def test_the_script_moves_every_copy_to_a_forks_url(tmp_path):
    for place in [*PLACES, "scripts/set_repository_url.sh"]:
        for path in REPO.glob(place):
            (tmp_path / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp_path / path.relative_to(REPO))
    before = _slugs(tmp_path)
    fork = "https://github.com/some-lab/resontech_nb.fork"
    done = subprocess.run(
        ["bash", "scripts/set_repository_url.sh", fork + ".git"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    after = _slugs(tmp_path)
    assert {path: len(s) for path, s in after.items()} == {path: len(s) for path, s in before.items()}
    assert {s for slugs in after.values() for s in slugs} == {_slug(fork)}
    assert f'REPOSITORY_URL = "{fork}"' in (tmp_path / "resontech_nb/__init__.py").read_text(encoding="utf-8")
    assert f"https://mybinder.org/v2/gh/{_slug(fork)}/HEAD" in (tmp_path / "README.md").read_text(encoding="utf-8")

    refused = subprocess.run(
        ["bash", "scripts/set_repository_url.sh", "gitlab.com/x"], cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: give the fork's GitHub URL, e.g. bash scripts/set_repository_url.sh https://github.com/OWNER/REPO"
    ]
