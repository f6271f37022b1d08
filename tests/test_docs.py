"""The manual holds together: every docs page the README, configs and code name exists (with the anchor or section
named), every relative link of the README and the docs resolves, and every command they show parses.

`mkdocs build --strict` (in .ci/run) checks the links between the docs pages too; these tests also cover what lives
outside docs/ (README.md, configs, code), which MkDocs never reads, and run without MkDocs installed."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TINY_SHAKESPEARE

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# Files outside docs/ that name docs pages or README sections in comments, messages and docstrings.
CITING = sorted(
    {README}
    | {path for path in (REPO_ROOT / "configs").iterdir() if path.is_file()}
    | {path for code in ("lightning_trickster", "plugins", "benchmarks") for path in (REPO_ROOT / code).rglob("*.py")}
)

FENCE = re.compile(r"^ *```")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#* *$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def outside_code_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line that is not inside a fenced code block."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """MkDocs' anchor for a heading (Python-Markdown's toc slugify): the heading's text, punctuation dropped,
    lowercase, runs of spaces and hyphens to one hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts with its text only
    text = re.sub(r"[^\w\s-]", "", text, flags=re.ASCII).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page; a repeated heading gets _1, _2, ... as MkDocs numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in outside_code_blocks(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        anchor = slug(match.group(2))
        if anchor in seen:
            seen[anchor] += 1
            anchor = f"{anchor}_{seen[anchor]}"
        else:
            seen[anchor] = 0
        found.add(anchor)
    return found


def relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


# ---------------------------------------------------------------------------------------------------------------
# (a) docs paths and README sections named outside docs/

# docs/<page>, optionally #anchor, optionally followed by a section name: "(docs/tenstorrent.md, Precision)".
DOCS_REFERENCE = re.compile(
    r"(?<![\w./-])docs/(?P<path>[\w./-]*\w)(?:#(?P<anchor>[\w-]+))?"
    r'(?:, (?:section )?"?(?P<section>[A-Z][^)"\n]*?)"?\))?'
)
# README.md#anchor, or a section of it named in prose: "(README, Performance)", "(see README, section Tenstorrent)".
README_REFERENCE = re.compile(
    r'README(?:\.md)?(?:#(?P<anchor>[\w-]+)|, (?:section )?"?(?P<section>[A-Z][^)"\n]*?)"?\))'
)


def references(pattern: re.Pattern) -> list[tuple[str, re.Match]]:
    found = []
    for path in CITING:
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{relative(path)}:{line}", match))
    return found


def test_citing_files_name_docs_pages():
    """A docs path is found at all: the tests below would pass vacuously if the pattern stopped matching."""
    cited = {match["path"] for _, match in DOCS_REFERENCES}
    assert {"tenstorrent.md", "data.md"} <= cited, cited


DOCS_REFERENCES = references(DOCS_REFERENCE)
README_REFERENCES = references(README_REFERENCE)


@pytest.mark.parametrize(
    "where,match", DOCS_REFERENCES, ids=[f"{where} {match[0]}" for where, match in DOCS_REFERENCES]
)
def test_docs_path_named_outside_docs_exists(where, match):
    target = DOCS / match["path"]
    assert target.exists(), f"{where} names docs/{match['path']}, which does not exist"
    if match["anchor"]:
        assert match["anchor"] in anchors(target), f"{where}: docs/{match['path']} has no heading #{match['anchor']}"
    if match["section"]:
        assert slug(match["section"]) in anchors(target), (
            f"{where}: docs/{match['path']} has no section {match['section']!r}"
        )


@pytest.mark.parametrize(
    "where,match", README_REFERENCES, ids=[f"{where} {match[0]}" for where, match in README_REFERENCES]
)
def test_readme_section_named_outside_docs_exists(where, match):
    """README sections that comments, configs and messages cite are still README sections; the manual moved to
    docs/, so a reference to a section that moved names its docs page instead."""
    anchor = match["anchor"] or slug(match["section"])
    assert anchor in anchors(README), (
        f"{where} cites the README's {match['section'] or '#' + match['anchor']!r}, which is no longer a README "
        "section: name the docs page it moved to (docs/<page>.md, Section)"
    )


# ---------------------------------------------------------------------------------------------------------------
# (b) relative links of the README and of the docs pages


def links(page: Path) -> list[tuple[str, str]]:
    text = page.read_text(encoding="utf-8")
    return [
        (f"{relative(page)}:{number}", target)
        for number, line in outside_code_blocks(text)
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line))  # a link inside inline code is text
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


LINKS = [(where, target) for page in [README, *PAGES] for where, target in links(page)]


def test_the_readme_links_into_the_docs():
    readme_targets = {target.split("#")[0] for where, target in LINKS if where.startswith("README.md:")}
    assert {f"docs/{page.name}" for page in PAGES} <= readme_targets


@pytest.mark.parametrize("where,target", LINKS, ids=[f"{where} {target}" for where, target in LINKS])
def test_relative_link_resolves(where, target):
    page = REPO_ROOT / where.rsplit(":", 1)[0]
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{where}: {target} points at {resolved}, which does not exist"
    if page.is_relative_to(DOCS):  # MkDocs copies docs/ only: a link out of it breaks on the site
        assert resolved.is_relative_to(DOCS), f"{where}: {target} leaves docs/, which the site does not contain"
    if anchor:
        assert resolved.suffix == ".md", f"{where}: {target} has an anchor but is not a Markdown page"
        assert anchor in anchors(resolved), f"{where}: {relative(resolved)} has no heading #{anchor}"


# ---------------------------------------------------------------------------------------------------------------
# (c) every command the README and the docs show parses

PROGRAM = re.compile(r"-m lightning_trickster(?=\s|$)")  # python -m ..., and torchrun's -m
LIGHTNING_COMMANDS = {"fit", "validate", "test", "predict"}
# Placeholders in shown commands, replaced by something that parses.
PLACEHOLDERS = {"$STDLIB": "/usr/lib/python3", "FILE": str(TINY_SHAKESPEARE), "PATH": str(TINY_SHAKESPEARE)}


def shown_commands(page: Path) -> list[tuple[str, str]]:
    """(where, command line) of every `python -m lightning_trickster ...` in a code block (continuation lines
    joined) or in inline code."""
    text = page.read_text(encoding="utf-8")
    found, fenced, pending = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced, pending = not fenced, ""
            continue
        if fenced:
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if PROGRAM.search(pending):
                found.append((f"{relative(page)}:{number}", pending))
            pending = ""
        else:
            for span in re.findall(r"`([^`]+)`", line):
                if span.startswith("python -m lightning_trickster"):
                    found.append((f"{relative(page)}:{number}", span))
    return found


def arguments(command: str) -> tuple[str, ...]:
    """What the command passes to the program, placeholders replaced, shell comments dropped."""
    for placeholder, value in PLACEHOLDERS.items():
        command = re.sub(rf"(?<![\w$.-]){re.escape(placeholder)}(?![\w.-])", value, command)
    words = shlex.split(command, comments=True)
    return tuple(words[words.index("lightning_trickster") + 1 :])


COMMANDS: dict[tuple[str, ...], list[str]] = {}
for _page in [README, *PAGES]:
    for _where, _command in shown_commands(_page):
        COMMANDS.setdefault(arguments(_command), []).append(_where)


def run_main(args: list[str]) -> tuple[int, str]:
    from lightning_trickster.cli import main

    output = io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            main(args)
        except SystemExit as stop:
            code = stop.code
    return code or 0, output.getvalue()


def test_the_docs_show_every_command():
    shown = {args[0] for args in COMMANDS if args}
    listed = {"fit", "validate", "predict", "stages", "complete", "export", "plot", "prepare", "info", "sweep"}
    assert listed | {"tt-check"} <= shown, sorted(listed - shown)


@pytest.mark.parametrize("args", list(COMMANDS), ids=[" ".join(args)[:100] for args in COMMANDS])
def test_shown_command_parses(args, monkeypatch):
    """fit/validate/test/predict parse everything with --print_config (option names and values, no run); the
    project's own commands show --help, and every option the command passes must be one it lists."""
    monkeypatch.chdir(REPO_ROOT)
    where = ", ".join(COMMANDS[args])
    if not args or args[0].startswith("-"):  # the front door itself: `python -m lightning_trickster --help`
        code, output = run_main([*args] if "--help" in args else [*args, "--help"])
        assert code == 0, f"{where}: {' '.join(args)}\n{output[-2000:]}"
        return
    if args[0] in LIGHTNING_COMMANDS:
        code, output = run_main([*args, "--print_config"])
        assert code == 0, f"{where}: {' '.join(args)}\n{output[-2000:]}"
        return
    code, output = run_main([args[0], "--help"])
    assert code == 0, f"{where}: {args[0]} is not a command\n{output[-2000:]}"
    # Where the help defines an option: at the start of a line, or after its short form ("-c CONFIG, --config").
    listed = set(re.findall(r"^ +(?:-\w(?: \S+)?, )?(--[\w.-]+)", output, re.MULTILINE))
    options = [arg.split("=", 1)[0] for arg in args[1:] if re.fullmatch(r"--[\w.-]+(=.*)?", arg)]  # not values
    unknown = [option for option in options if option not in listed and not takes_any_field(option, listed)]
    assert not unknown, f"{where}: {args[0]} has no option {', '.join(unknown)} (its --help lists {sorted(listed)})"


def takes_any_field(option: str, listed: set[str]) -> bool:
    """`--runs.NAME` of a dict option `--runs`, or `--sampling.top_k` of an option `--sampling` whose fields the
    help does not list one by one: the longest listed prefix has no listed fields."""
    parts = option.split(".")
    for n in range(len(parts) - 1, 0, -1):
        group = ".".join(parts[:n])
        if group in listed:
            return not any(name.startswith(group + ".") and not name.endswith(".help") for name in listed)
    return False
