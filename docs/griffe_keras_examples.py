"""A griffe extension: reads the Keras docstring style's unindented `Example:` sections.

Keras writes

    Example:

    >>> model.fit(...)

with the example at the docstring's own indentation, where griffe's Google-style parser
expects an indented `Examples:` block (it would render `>>>` lines as nested quotes).
This extension indents such a section under `Examples:` before griffe parses it, so the
doctest lines become highlighted `pycon` blocks and fenced code stays as it is. The
docstrings in `keras_agd/` are left in the Keras style.
"""

import re

import griffe

HEADER = re.compile(r"^Examples?:\s*$")
# A following section of the Google style ends the example.
NEXT_SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Yields|Attributes|References?|Notes?):")


def keras_examples(text):
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not HEADER.match(line):
            out.append(line)
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not NEXT_SECTION.match(lines[end]):
            end += 1
        body = lines[i + 1 : end]
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        out.append("Examples:")
        out.extend(f"    {entry}" if entry.strip() else "" for entry in body)
        if end < len(lines):
            out.append("")
        i = end
    return "\n".join(out)


class KerasExamples(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = keras_examples(obj.docstring.value)
