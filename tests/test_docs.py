import ast
import re
from pathlib import Path

import keras_agd

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_every_public_name_is_in_the_api_reference():
    reference = (DOCS / "api.md").read_text()
    missing = [name for name in keras_agd.__all__ if f"`keras_agd.{name}`" not in reference]
    assert not missing, f"add to docs/api.md: {missing}"


def _message_patterns():
    """Every string of keras_agd/ as a regex, its formatted parts (f-string values,
    joined pieces) matching anything."""

    def parts(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            return [piece for value in node.values for piece in parts(value)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return parts(node.left) + parts(node.right)
        return [None]  # Any value.

    patterns = set()
    for path in (ROOT / "keras_agd").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant | ast.JoinedStr | ast.BinOp):
                pieces = parts(node)
                if sum(len(piece) for piece in pieces if piece) > 12:
                    patterns.add("".join(".*?" if p is None else re.escape(p) for p in pieces))
    return [re.compile(pattern, re.DOTALL) for pattern in patterns]


def test_the_troubleshooting_page_quotes_the_errors_as_raised():
    page = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n(.*?)```", page, re.DOTALL)
    assert len(blocks) > 30
    patterns = _message_patterns()
    stale = []
    for block in blocks:
        message = " ".join(block.split())
        # "ValueError: ..." (a leading "... " is the text TensorFlow puts around it).
        message = re.sub(r"^\w+: (\.\.\. )?", "", message)
        if not any(pattern.fullmatch(message) for pattern in patterns):
            stale.append(message)
    assert not stale, f"no longer raised by keras_agd (update docs/troubleshooting.md): {stale}"


def test_every_list_in_the_pages_starts_a_block():
    # Markdown joins a list that follows a paragraph line into that paragraph: the site
    # then shows "Workloads: - MNIST ... - CNN ..." as one run-on line.
    item = re.compile(r"(- |\* |\d+\. )")
    joined = []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").split("\n")
        in_code = False
        for number, (before, line) in enumerate(zip([""] + lines, lines), start=1):
            in_code ^= line.startswith("```")
            if in_code or not item.match(line) or not before.strip():
                continue
            if not (before.startswith(("#", " ", "|", ">")) or item.match(before)):
                joined.append(f"{path.name}:{number}: {line[:40]}")
    assert not joined, f"add a blank line before these lists: {joined}"


def test_no_heading_holds_a_command():
    # The table of contents cuts long headings: a command goes in a code block below.
    long = [
        f"{path.name}: {line}"
        for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
        for line in path.read_text(encoding="utf-8").split("\n")
        if re.match(r"#+ .*`python ", line)
    ]
    assert not long, f"move these commands out of their headings: {long}"


# Words about how the project is run, not about the software: issue numbers, sessions,
# lent machines, commit hashes, the development machine's folders.
INTERNAL_WORDING = re.compile(
    r"\bissues? #?\d+|\bthis (?:session|task)\b|\bwas lent\b|\bno GPU was\b"
    r"|\bcommit [0-9a-f]{7,40}\b|\.\./shared\b|/work/main\b",
    re.IGNORECASE,
)


def test_pages_docstrings_and_notebooks_speak_of_the_software():
    paths = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    paths += sorted((DOCS / "tutorials").glob("*.py"))
    paths += sorted((DOCS / "tutorials").glob("*.ipynb"))
    paths += sorted((ROOT / "keras_agd").glob("*.py"))
    paths += sorted((ROOT / "examples").glob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)!r}"
        for path in paths
        for match in INTERNAL_WORDING.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"internal wording: {found}"
