"""What a package index shows and what pip installs: setup.py's metadata, its version
ranges against the constraint files CI installs, the license, the changelog.

setup.py runs with `setuptools.setup` replaced by a recorder, so no build happens here
(.ci/run builds the wheel and the sdist and checks them with .ci/check_dist.py).
"""

import datetime
import fnmatch
import hashlib
import re
import runpy
import sys
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import keras_agd

ROOT = Path(__file__).resolve().parents[1]
# SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
OLDEST = "constraints-oldest.txt"
URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


@pytest.fixture(scope="module")
def setup_py():
    """setup.py's `setup(...)` arguments and its module globals."""
    recorded = {}
    setuptools = types.ModuleType("setuptools")
    setuptools.setup = recorded.update
    setuptools.find_packages = lambda **kwargs: ("find_packages", kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "setuptools", setuptools)
        patch.chdir(ROOT)
        module = runpy.run_path(str(ROOT / "setup.py"))
    return recorded, module


def pins(name):
    """`{canonical name: Version}` of a constraint file."""
    result = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            result[canonicalize_name(package)] = Version(version)
    return result


def environments():
    """`{constraint file: extras}` of the installs in .ci/run."""
    found = {}
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        install = re.search(r"pip install .*-c (\S+) .*\[([\w,]+)\]", line)
        if install and not line.lstrip().startswith("#"):
            found[install.group(1)] = install.group(2).split(",")
    assert set(found) == {"constraints.txt", OLDEST}, found
    return found


def requirements(setup_kwargs, extras):
    return [Requirement(text) for text in setup_kwargs["install_requires"]] + [
        Requirement(text) for extra in extras for text in setup_kwargs["extras_require"][extra]
    ]


def bounds(specifier):
    """The version of `>=` and the one of `<` in a specifier set."""
    by_operator = {spec.operator: Version(spec.version) for spec in specifier}
    assert set(by_operator) == {">=", "<"}, f"want one >= and one < bound: {specifier}"
    return by_operator[">="], by_operator["<"]


def test_every_requirement_is_pinned_within_its_range_in_each_ci_environment(setup_py):
    kwargs, _ = setup_py
    for name, extras in environments().items():
        pinned = pins(name)
        for requirement in requirements(kwargs, extras):
            package = canonicalize_name(requirement.name)
            assert package in pinned, f"{name} pins no version of {requirement.name}"
            assert requirement.specifier.contains(pinned[package], prereleases=True), (
                f"{name} pins {requirement.name}=={pinned[package]}, outside setup.py's "
                f"{requirement}"
            )


def test_lower_bounds_are_the_oldest_pins_and_newest_pins_are_not_older(setup_py):
    # The docs extra is installed with constraints.txt only (its lower bounds are untested).
    kwargs, _ = setup_py
    oldest, newest = pins(OLDEST), pins("constraints.txt")
    for requirement in requirements(kwargs, environments()[OLDEST]):
        package = canonicalize_name(requirement.name)
        assert package in oldest and package in newest, requirement.name
        lower, _ = bounds(requirement.specifier)
        assert oldest[package] == lower, (
            f"{OLDEST} pins {requirement.name}=={oldest[package]}; setup.py's lower bound "
            f"is {lower}: the lower bound must be the oldest release CI tests"
        )
        assert newest[package] >= oldest[package], requirement.name


def test_a_requirement_listed_twice_has_one_range(setup_py):
    kwargs, _ = setup_py
    ranges = {}
    groups = [kwargs["install_requires"], *kwargs["extras_require"].values()]
    for text in (text for group in groups for text in group):
        requirement = Requirement(text)
        ranges.setdefault(canonicalize_name(requirement.name), set()).add(
            str(SpecifierSet(str(requirement.specifier)))
        )
        bounds(requirement.specifier)  # Every range says both ends.
    assert {name: r for name, r in ranges.items() if len(r) > 1} == {}


def test_the_license_is_the_apache_2_0_text_that_setup_py_names(setup_py):
    kwargs, _ = setup_py
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    assert kwargs["license_expression"] == "Apache-2.0"
    assert kwargs["license_files"] == ["LICENSE"]
    # License classifiers and License-Expression exclude each other (PEP 639).
    assert not [c for c in kwargs["classifiers"] if c.startswith("License ::")]


def test_the_changelogs_newest_version_is_the_packages(setup_py):
    kwargs, _ = setup_py
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d[^\]]*)\] - (\S+)$", changelog, re.MULTILINE)
    assert releases, "CHANGELOG.md has no `## [version] - date` heading"
    newest, date = releases[0]
    datetime.date.fromisoformat(date)
    assert newest == keras_agd.__version__ == kwargs["version"]
    versions = [Version(version) for version, _ in releases]
    assert versions == sorted(versions, reverse=True), "newest release first"


def test_the_metadata_a_package_index_shows(setup_py):
    kwargs, _ = setup_py
    for field in ("name", "description", "author", "long_description", "python_requires"):
        assert kwargs[field], field
    assert kwargs["long_description_content_type"] == "text/markdown"
    assert len(kwargs["keywords"]) >= 3
    assert set(kwargs["project_urls"]) == {"Documentation", "Source", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in kwargs["project_urls"].values())
    classifiers = kwargs["classifiers"]
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert any(c.startswith("Intended Audience :: ") for c in classifiers)
    # The Python versions claimed start at python_requires' lower bound (CI runs 3.11).
    claimed = [c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r".*:: 3\.\d+", c)]
    (lower,) = (s.version for s in SpecifierSet(kwargs["python_requires"]) if s.operator == ">=")
    assert claimed and min(claimed, key=Version) == lower


def test_the_repository_is_written_once_and_agrees_everywhere(setup_py):
    kwargs, module = setup_py
    repository = module["REPOSITORY"]
    slug = repository.removeprefix("https://github.com/")
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^repo_url: (\S+)$", mkdocs, re.MULTILINE).group(1) == repository
    assert re.search(r"^repo_name: (\S+)$", mkdocs, re.MULTILINE).group(1) == slug
    assert kwargs["project_urls"]["Source"] == repository
    assert all(url.startswith(repository) for url in kwargs["project_urls"].values())
    # A hosted site, once mkdocs.yml names it, is the documentation link.
    site = re.search(r"^site_url: (\S+)$", mkdocs, re.MULTILINE)
    if site:
        assert kwargs["project_urls"]["Documentation"] == site.group(1)
    # Links and Colab badges in the README, the docs and the tutorials use the same slug.
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "docs").rglob("*.py")]
    texts += (ROOT / "docs" / "tutorials").glob("*.ipynb")
    pattern = re.compile(r"github(?:usercontent)?(?:\.com)?/([\w.-]+/keras-agd)\b")
    others = {
        (path.relative_to(ROOT).as_posix(), found)
        for path in texts
        for found in pattern.findall(path.read_text(encoding="utf-8"))
        if found != slug
    }
    assert not others, f"other repository slugs than {slug}: {sorted(others)}"


def test_the_long_description_has_no_relative_link(setup_py):
    kwargs, module = setup_py
    description = module["_FENCE"].sub("", kwargs["long_description"])
    targets = [m.group(2) for pattern in module["_LINKS"] for m in pattern.finditer(description)]
    assert targets, "the README has no link: is the link pattern still right?"
    relative = [t for t in targets if not (URL.match(t) or t.startswith("#"))]
    assert not relative


def test_relative_links_become_links_to_the_repository(setup_py):
    _, module = setup_py
    blob = module["REPOSITORY"] + "/blob/main/"
    raw = "https://raw.githubusercontent.com/keras-agd/keras-agd/main/"
    markdown = (
        "[a](docs/agd.md#x) ![p](./docs/p.png) [w](https://keras.io) [u](#usage)\n"
        '<img src="docs/i.svg" width="9"> <a href="LICENSE">l</a>\n'
        "[ref]: docs/ref.md\n"
        "```python\nx = [a](b)\n```\n"
    )
    assert module["absolute_links"](markdown) == (
        f"[a]({blob}docs/agd.md#x) ![p]({raw}docs/p.png) [w](https://keras.io) [u](#usage)\n"
        f'<img src="{raw}docs/i.svg" width="9"> <a href="{blob}LICENSE">l</a>\n'
        f"[ref]: {blob}docs/ref.md\n"
        "```python\nx = [a](b)\n```\n"
    )


def test_the_wheel_holds_the_library_only(setup_py):
    kwargs, _ = setup_py
    finder, options = kwargs["packages"]
    assert finder == "find_packages" and set(options) == {"include"}
    # The folders with an __init__.py that find_packages(include=...) would keep.
    # Hidden folders (virtual environments, caches) are not looked into.
    tops = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in tops
        for path in top.rglob("__init__.py")
    }
    kept = {f for f in folders if any(fnmatch.fnmatchcase(f, p) for p in options["include"])}
    assert "keras_agd" in kept
    assert all(name == "keras_agd" or name.startswith("keras_agd.") for name in kept)


def test_the_sdist_lists_what_describes_licenses_and_pins_the_package():
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "constraints.txt", OLDEST):
        assert name in manifest, name
    assert "prune tests" in (ROOT / "MANIFEST.in").read_text()
