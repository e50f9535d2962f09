"""The output shown in docs/CONFIG.md and docs/SCHEDULING.md is what the code prints: this module
runs the commands the docs show, on the files the docs show, and writes their output back.

In the Markdown:

* a fenced block opened with ```` ```yaml file=NAME ```` is the file NAME;
* a fenced block opened with ```` ```console ```` is a terminal: each line that starts with ``$ `` is
  a command, run with bash after the files above it are written, and the lines up to the next
  command are its output (stdout and stderr together), which this module rewrites;
* each heading starts a new, empty directory; the files and commands under it share it.

Commands run with this checkout first on ``PYTHONPATH`` and the venv's ``loa-agent`` and ``loa``
first on ``PATH``.  The directory is shown as ``/etc/loa``, where a box keeps ``agent.yaml``, so a
command run there by hand prints exactly what the doc shows.

    python -m tests.doc_examples            rewrite the output blocks (``make doc-examples``)
    python -m tests.doc_examples --check    exit 1 and show the differences instead

``tests/test_docs.py`` fails while a block differs from what the code prints.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = (REPO / "docs" / "CONFIG.md", REPO / "docs" / "SCHEDULING.md")
SHOWN_DIRECTORY = "/etc/loa"
REGENERATE = "make doc-examples  (or: PYTHONPATH=. .venv/bin/python -m tests.doc_examples)"

_FENCE = re.compile(r"```(\S*)(?:\s+file=(\S+))?\s*")


def render(text: str) -> str:
    """``text`` with every console block's output replaced by what its commands print now."""
    lines = text.split("\n")
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loa-doc-") as root:
        directory = Path(root) / "0"
        directory.mkdir()
        index = 0
        while index < len(lines):
            line = lines[index]
            fence = _FENCE.fullmatch(line)
            if fence is None:
                if line.startswith("#"):
                    directory = Path(root) / str(len(list(Path(root).iterdir())))
                    directory.mkdir()
                out.append(line)
                index += 1
                continue
            close = lines.index("```", index + 1)
            body = lines[index + 1 : close]
            language, name = fence.groups()
            if language == "console":
                body = _run(body, directory)
            elif name is not None:
                (directory / name).write_text("\n".join(body) + "\n", encoding="utf-8")
            out.extend([line, *body, "```"])
            index = close + 1
    return "\n".join(out)


def console_blocks(text: str) -> list[list[str]]:
    """The body of every console block in ``text``."""
    found = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        fence = _FENCE.fullmatch(line)
        if fence is not None and fence.group(1) == "console":
            found.append(lines[index + 1 : lines.index("```", index + 1)])
    return found


def _run(body: list[str], directory: Path) -> list[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    out = []
    for command in (line.removeprefix("$ ") for line in body if line.startswith("$ ")):
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        printed = result.stdout
        for real in {str(directory.resolve()), str(directory)}:
            printed = printed.replace(real, SHOWN_DIRECTORY)
        out.append(f"$ {command}")
        out.extend(printed.rstrip("\n").split("\n") if printed.strip() else [])
    return out


def differences(path: Path) -> str:
    """A unified diff from the doc to its real output; empty when they agree."""
    text = path.read_text(encoding="utf-8")
    real = render(text)
    diff = difflib.unified_diff(
        text.splitlines(keepends=True), real.splitlines(keepends=True), str(path), "what the code prints"
    )
    return "".join(diff)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", nargs="*", type=Path, default=list(DOCS), help="Markdown files")
    parser.add_argument("--check", action="store_true", help="only show the differences")
    args = parser.parse_args(argv)
    stale = False
    for path in args.docs:
        if args.check:
            diff = differences(path)
            stale = stale or bool(diff)
            sys.stdout.write(diff)
            continue
        text = path.read_text(encoding="utf-8")
        real = render(text)
        if real != text:
            path.write_text(real, encoding="utf-8")
            print(f"rewrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
