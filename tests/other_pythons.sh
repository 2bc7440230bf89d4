#!/usr/bin/env bash
# The unit tier on every other CPython kstate supports that this machine has
# (python3.12, python3.13, python3.14 on PATH, or installed by pyenv), each in a venv of its own
# (.venv-3.X): a fresh install on a newer interpreter resolves newer dependencies,
# and one of them can break an import that 3.11 never sees (quart 0.23, 3.13+ only,
# broke quart-trio 0.12). An interpreter that is missing is named and skipped.
# KSTATE_OTHER_PYTHONS="3.12 3.13" chooses the versions ("" runs none).
set -euo pipefail
cd "$(dirname "$0")/.."
# python3.X that runs: on PATH, else a pyenv-installed 3.X.Y (its shim on
# PATH only works for the versions pyenv was told to use).
interpreter() {
    if "python$1" -c 'import sys' >/dev/null 2>&1; then echo "python$1"; return; fi
    local root dir found=""
    root=$(pyenv root 2>/dev/null) || return 0
    for dir in "$root/versions/$1".*; do  # (no match: the pattern itself, which fails)
        if "$dir/bin/python$1" -c 'import sys' >/dev/null 2>&1; then found=$dir/bin/python$1; fi
    done
    echo "$found"
}
failed=()
for v in ${KSTATE_OTHER_PYTHONS-3.12 3.13 3.14}; do
    python=$(interpreter "$v")
    if [ -z "$python" ]; then
        echo "tests/other_pythons.sh: python$v: not on this machine, skipped"
        continue
    fi
    venv=".venv-$v"
    start=$SECONDS
    if [ ! -x "$venv/bin/python" ]; then "$python" -m venv "$venv"; fi
    if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q -e '.[dev]'
        touch "$venv/.installed"
    fi
    if "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 tests/unit; then
        echo "tests/other_pythons.sh: $("$venv/bin/python" -V): unit tier passed ($((SECONDS - start)) s)"
    else
        echo "tests/other_pythons.sh: $("$venv/bin/python" -V): unit tier FAILED"
        failed+=("$v")
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "failed on python ${failed[*]}"; exit 1; }
