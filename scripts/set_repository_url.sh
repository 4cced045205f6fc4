#!/usr/bin/env bash
# A fork points every link at itself:  bash scripts/set_repository_url.sh https://github.com/OWNER/REPO
# REPOSITORY_URL in resontech_nb/__init__.py is the one authoritative URL; this rewrites it and every copy derived
# from it: the README (badges, pip line), pyproject.toml's [project.urls], binder/, and the notebooks' first cell
# and Colab badges. tests/test_repository_url.py checks that no other URL is left anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
new="${1:-}"
new="${new%/}"
new="${new%.git}"
if ! [[ "$new" =~ ^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]]; then
  echo "error: give the fork's GitHub URL, e.g. bash scripts/set_repository_url.sh https://github.com/OWNER/REPO" >&2
  exit 2
fi
old="$(sed -n 's/^REPOSITORY_URL = "\(https:\/\/github\.com\/[^"]*\)".*/\1/p' resontech_nb/__init__.py)"
[ -n "$old" ] || { echo "error: no REPOSITORY_URL = \"https://github.com/...\" line in resontech_nb/__init__.py" >&2; exit 1; }
old_slug="${old#https://github.com/}"
new_slug="${new#https://github.com/}"
escape() { printf '%s' "$1" | sed 's/[.[\*^$/&]/\\&/g'; }
o="$(escape "$old_slug")"
n="$(escape "$new_slug")"
files=(resontech_nb/__init__.py README.md pyproject.toml binder/* notebooks/*.ipynb)
# github.com/OWNER/REPO (links, pip and git URLs, one ending a sentence), Colab's .../github/OWNER/REPO/..., Binder's .../v2/gh/OWNER/REPO/...
sed -i -E \
  -e "s#(github\.com/)${o}([^A-Za-z0-9_.-]|\.git|\.[^A-Za-z0-9_-]|\.$|$)#\1${n}\2#g" \
  -e "s#(colab\.research\.google\.com/github/)${o}/#\1${n}/#g" \
  -e "s#(mybinder\.org/v2/gh/)${o}/#\1${n}/#g" \
  "${files[@]}"
echo "repository URL: $old -> $new (in ${#files[@]} files); check with: python -m pytest tests/test_repository_url.py"
