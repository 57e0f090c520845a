"""The README's samples are true: every `console` block is run and its output compared (doctest-style).

A block runs in a fresh directory holding `deploy/` (a link to the repository's) and the files the
README writes out (`<!-- readme-file: NAME -->` before a fenced block). In the expected output a
line `…` stands for any number of lines and `…` inside a line for any text. A block preceded by
`<!-- console: not run (REASON) -->` is not run (a long-running command, Docker, a command of
another change). The settings table is checked against `service.config.settings.SETTINGS`.

After a change of output: `python -m tests.test_readme --update` rewrites the outputs of the
blocks that hold no `…`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.config.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "architecture.md")
ELLIPSIS = "…"

_FENCE = re.compile(
    r"(?P<marker><!-- (?P<kind>console|readme-file): (?P<arg>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


@dataclass
class Command:
    """One `$ command` of a console block and the output shown under it."""

    doc: Path
    line: int
    command: str
    expected: list[str]


@dataclass
class Block:
    """A fenced block of a document."""

    doc: Path
    line: int
    lang: str
    body: str
    kind: str | None
    arg: str | None


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start("lang")) + 1
        out.append(Block(doc, line, m["lang"], m["body"], m["kind"], m["arg"]))
    return out


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    for number, line in enumerate(block.body.splitlines(), start=block.line + 1):
        if line.startswith("$ "):
            out.append(Command(block.doc, number, line[2:], []))
        elif out:
            out[-1].expected.append(line)
    return out


def runnable_blocks(doc: Path) -> list[Block]:
    return [
        b
        for b in blocks(doc)
        if b.lang == "console" and not (b.kind == "console" and (b.arg or "").startswith("not run"))
    ]


def runnable(doc: Path) -> list[Command]:
    return [c for b in runnable_blocks(doc) for c in commands(b)]


def files(doc: Path) -> dict[str, str]:
    return {b.arg or "": b.body for b in blocks(doc) if b.kind == "readme-file"}


def matches(expected: list[str], actual: list[str]) -> bool:
    """Doctest-style: a line `…` matches any lines, `…` in a line any text."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == ELLIPSIS:
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(map(re.escape, head.rstrip().split(ELLIPSIS)))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and matches(rest, actual[1:])


def run(command: str, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTKEEPER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "100"
    done = subprocess.run(
        f"{command} 2>&1", shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]


def workdir(tmp: Path, doc: Path) -> Path:
    (tmp / "deploy").symlink_to(ROOT / "deploy")
    for name, body in files(doc).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(body, encoding="utf-8")
    return tmp


def settings_table() -> str:
    """The README's settings table, from SETTINGS."""
    rows = ["| variable | site-file key | default | read by | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "—"
        key = f"`{s.site_key}`" if s.site_key else "—"
        rows.append(f"| `{s.env}` | {key} | {default} | {s.read_by} | {s.meaning} |")
    return "\n".join(rows)


CASES = [(doc, b) for doc in DOCS for b in runnable_blocks(doc)]


@pytest.mark.parametrize(("doc", "block"), CASES, ids=[f"{d.name}:{b.line}" for d, b in CASES])
def test_console_block(doc: Path, block: Block, tmp_path: Path) -> None:
    """The commands of one block run in order in one directory (a store made by one, read by the next)."""
    cwd = workdir(tmp_path, doc)
    for case in commands(block):
        actual = run(case.command, cwd)
        assert matches(case.expected, actual), (
            f"{doc.name}:{case.line} `{case.command}` printed:\n"
            + "\n".join(actual)
            + "\n\nthe document shows:\n"
            + "\n".join(case.expected)
        )


def test_the_documents_have_runnable_blocks_and_marked_ones() -> None:
    readme = runnable(DOCS[0])
    assert len(readme) >= 5
    assert "site.yaml" in files(DOCS[0])
    skipped = [b for b in blocks(DOCS[0]) if b.kind == "console"]
    assert all((b.arg or "").startswith("not run (") for b in skipped), "a console marker says why it is not run"


def test_settings_table_is_every_setting() -> None:
    text = DOCS[0].read_text(encoding="utf-8")
    m = re.search(r"<!-- settings-table:[^\n]*-->\n(.*?)\n\n", text, re.S)
    assert m, "README lost its settings table"
    assert m.group(1) == settings_table()


def test_matching_is_doctest_like() -> None:
    assert matches(["a", ELLIPSIS, "z"], ["a", "b", "c", "z"])
    assert matches(["x … y"], ["x 12 y"])
    assert not matches(["a", "z"], ["a", "b", "z"])
    assert not matches(["x … y"], ["x 12 z"])
    assert matches([ELLIPSIS], [])


def update() -> None:
    """Rewrite the output of every runnable block without `…` to what the command prints now."""
    import tempfile

    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in runnable_blocks(doc):
            with tempfile.TemporaryDirectory() as tmp:
                cwd = workdir(Path(tmp), doc)
                for case in commands(block):
                    actual = run(case.command, cwd)
                    if any(ELLIPSIS in line for line in case.expected):
                        continue
                    old = "\n".join([f"$ {case.command}", *case.expected]) + "\n"
                    new = "\n".join([f"$ {case.command}", *actual]) + "\n"
                    text = text.replace(old, new, 1)
        text = re.sub(
            r"(<!-- settings-table:[^\n]*-->\n)(.*?)(\n\n)",
            lambda m: m.group(1) + settings_table() + m.group(3),
            text,
            count=1,
            flags=re.S,
        )
        doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        sys.exit("usage: python -m tests.test_readme --update")
