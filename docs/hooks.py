"""mkdocs hooks: the site's home page is the README, its links rewritten for the site.

The README links into `docs/` (`docs/agd.md`) and to other files of the repository; on
the site the first become page links (`agd.md`), the others links to the file on GitHub.
A link to a file that does not exist is reported, and `mkdocs build --strict` fails on it.
"""

import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.readme")

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def _site_link(target, repo_url):
    if re.match(r"^[a-z]+:|^#", target):
        return target
    path, _, anchor = target.partition("#")
    if not (ROOT / path).exists():
        log.warning("README.md links to %r, which does not exist", target)
        return target
    if path.startswith("docs/"):
        return target[len("docs/") :]
    return f"{repo_url.rstrip('/')}/blob/main/{target}"


def on_files(files, config):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = LINK.sub(
        lambda m: m.group(1) + _site_link(m.group(2), config["repo_url"]) + m.group(3), readme
    )
    files.append(File.generated(config, "index.md", content=text))
    return files
