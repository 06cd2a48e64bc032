"""Checks the wheel and the sdist that `python -m build` wrote into DIST.

The metadata must be what a package index accepts (packaging's validation of every
field) and shows (summary, links, a README without relative links, the license), and
the files must be the library only: the wheel holds keras_agd/ and its .dist-info, the
sdist the library, its license, changelog, README and constraint files.

Usage: python .ci/check_dist.py DIST
"""

import re
import sys
import tarfile
import zipfile
from pathlib import Path

from packaging.metadata import Metadata

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(
    r'^__version__ = "([^"]+)"$',
    (ROOT / "keras_agd" / "_version.py").read_text(encoding="utf-8"),
    re.MULTILINE,
).group(1)
LIBRARY = sorted(path.relative_to(ROOT).as_posix() for path in ROOT.glob("keras_agd/**/*.py"))
SDIST_EXTRAS = {
    "CHANGELOG.md",
    "LICENSE",
    "MANIFEST.in",
    "PKG-INFO",
    "README.md",
    "constraints-oldest.txt",
    "constraints.txt",
    "pyproject.toml",
    "setup.cfg",  # Written by setuptools (its egg_info settings).
    "setup.py",
}
# Link targets of Markdown and inline HTML; fenced code is removed first.
LINKS = re.compile(
    r"\]\(([^)\s]+)|^ {0,3}\[[^\]]+\]:[ \t]*(\S+)|\b(?:src|href)=[\"']([^\"']+)", re.MULTILINE
)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)


def check(ok, message):
    if not ok:
        raise SystemExit(f"check_dist: {message}")


def check_metadata(raw, where):
    """The parsed, validated metadata; raises on a field an index would refuse."""
    metadata = Metadata.from_email(raw, validate=True)
    check(metadata.name == "keras-agd", f"{where}: name {metadata.name}")
    check(str(metadata.version) == VERSION, f"{where}: version {metadata.version}")
    check(metadata.summary and metadata.author and metadata.keywords, f"{where}: summary")
    check(metadata.license_expression == "Apache-2.0", f"{where}: license expression")
    check(metadata.license_files == ["LICENSE"], f"{where}: license files")
    check(metadata.description_content_type == "text/markdown", f"{where}: README type")
    urls = {"Documentation", "Source", "Changelog", "Issues"}
    check(set(metadata.project_urls) == urls, f"{where}: {metadata.project_urls}")
    description = FENCE.sub("", metadata.description)
    targets = [next(filter(None, m.groups())) for m in LINKS.finditer(description)]
    relative = [t for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#", t)]
    check(targets and not relative, f"{where}: relative links {relative}")
    return metadata


def check_wheel(path):
    dist_info = f"keras_agd-{VERSION}.dist-info"
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata = check_metadata(wheel.read(f"{dist_info}/METADATA"), path.name)
        license_text = wheel.read(f"{dist_info}/licenses/LICENSE")
    check(license_text == (ROOT / "LICENSE").read_bytes(), "the wheel's LICENSE differs")
    outside = [n for n in names if not n.startswith(("keras_agd/", f"{dist_info}/"))]
    check(not outside, f"the wheel ships more than the library: {outside}")
    modules = sorted(n for n in names if n.startswith("keras_agd/"))
    check(modules == LIBRARY, f"the wheel's modules differ from keras_agd/: {modules}")
    return metadata


def check_sdist(path):
    top = f"keras_agd-{VERSION}"
    with tarfile.open(path) as sdist:
        members = [m for m in sdist.getmembers() if m.isfile()]
        names = {m.name.removeprefix(f"{top}/") for m in members}
        check(all(m.name.startswith(f"{top}/") for m in members), f"files outside {top}/")
        metadata = check_metadata(sdist.extractfile(f"{top}/PKG-INFO").read(), path.name)
    library = {n for n in names if n.startswith("keras_agd/")}
    egg_info = {n for n in names if n.startswith("keras_agd.egg-info/")}
    others = names - library - egg_info
    check(sorted(library) == LIBRARY, f"the sdist's modules differ from keras_agd/: {library}")
    check(others == SDIST_EXTRAS, f"the sdist's other files: {sorted(others)}")
    return metadata


def main(dist):
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    check([w.name for w in wheels] == [f"keras_agd-{VERSION}-py3-none-any.whl"], wheels)
    check([s.name for s in sdists] == [f"keras_agd-{VERSION}.tar.gz"], sdists)
    wheel, sdist = check_wheel(wheels[0]), check_sdist(sdists[0])
    # The same package whichever is installed (the wheel is built from the sdist).
    for field in ("requires_dist", "requires_python", "provides_extra", "classifiers"):
        check(getattr(wheel, field) == getattr(sdist, field), f"wheel and sdist differ: {field}")
    print(f"check_dist: {wheels[0].name} and {sdists[0].name} are fine")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
