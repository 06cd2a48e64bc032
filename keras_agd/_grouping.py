"""Which variables share a layer-specific rate: the checks of `grouping` and `exclude`.

The private half of `keras_agd.layer_adaptive.variable_groups`. Every public entry point
that takes these arguments (`variable_groups`, `LayerRates` and so `LayerAdaptive`) checks
them here, so each accepts and refuses the same values with the same messages.
"""

import re

GROUPINGS = ("layer", "variable")
# The flags of a compiled pattern that an inline group at the start of its string keeps, so
# that it survives a JSON config. (re.UNICODE is the default of every str pattern.)
_INLINE_FLAGS = {
    re.IGNORECASE: "i",
    re.MULTILINE: "m",
    re.DOTALL: "s",
    re.VERBOSE: "x",
    re.ASCII: "a",
}
_COMPILE_ERRORS = (re.error, ValueError, OverflowError, RecursionError)


def check_grouping(grouping):
    """`grouping` itself if it is `"layer"`, `"variable"` or a callable."""
    if callable(grouping) or (isinstance(grouping, str) and grouping in GROUPINGS):
        return grouping
    raise ValueError(
        f"`grouping` must be one of {', '.join(map(repr, GROUPINGS))} or a callable "
        f"mapping a variable to a group name. Received: grouping={grouping!r}"
    )


def check_exclude(exclude, name="exclude"):
    """`exclude` as a list of regular-expression strings, or `None`.

    `exclude` is a pattern (a string or a compiled `re.Pattern` of str) or a list or
    tuple of them; errors call it `name`. A compiled pattern becomes its string with its
    flags inline (`re.compile("bn", re.I)` gives `"(?i)bn"`): the list goes into an
    optimizer's config as plain JSON and compiles back to the same patterns.
    """
    if exclude is None:
        return None
    items = exclude if isinstance(exclude, list | tuple) else [exclude]
    patterns = []
    for item in items:
        if isinstance(item, re.Pattern) and isinstance(item.pattern, str):
            text = item.pattern
        elif isinstance(item, str):
            text = item
        else:
            raise ValueError(
                f"`{name}` must be a regular expression (a string or a compiled re.Pattern "
                f"of str) or a list of them. Received: {name}={exclude!r}"
            )
        if not text:
            # re.search finds the empty pattern in every path: it would exclude them all.
            raise ValueError(
                f"`{name}` patterns must be non-empty: an empty pattern matches every "
                f"variable path. Received: {name}={exclude!r}"
            )
        if isinstance(item, re.Pattern):
            text = _with_inline_flags(item, exclude, name)
        try:
            re.compile(text)
        except _COMPILE_ERRORS as error:
            raise ValueError(
                f"`{name}` is not a valid regular expression ({text!r}: {error}). "
                f"Received: {name}={exclude!r}"
            ) from error
        patterns.append(text)
    return patterns


def _with_inline_flags(pattern, exclude, name):
    flags = pattern.flags & ~re.UNICODE
    letters = "".join(letter for flag, letter in _INLINE_FLAGS.items() if flags & flag)
    text = f"(?{letters}){pattern.pattern}" if letters else pattern.pattern
    # Flags the string cannot carry (re.DEBUG, re.TEMPLATE), or a pattern the prefix changes.
    if flags & ~sum(_INLINE_FLAGS) or _flags(text) != pattern.flags:
        raise ValueError(
            f"`{name}` patterns must be strings, or compiled with no flags other than "
            "re.IGNORECASE, re.MULTILINE, re.DOTALL, re.VERBOSE and re.ASCII: the optimizer's "
            "config keeps each pattern as a string with its flags inline. Pass the string, "
            f"e.g. '(?i)norm'. Received: {name}={exclude!r}"
        )
    return text


def _flags(text):
    try:
        return re.compile(text).flags
    except _COMPILE_ERRORS:
        return None


def variable_path(variable):
    """The path of a `keras.Variable` (`"model/dense/kernel"`), or its name."""
    path = getattr(variable, "path", None) or getattr(variable, "name", None)
    if not isinstance(path, str):
        raise TypeError(
            "`variables` must be a list of keras.Variable (with a `path` or `name`). "
            f"Received an item: {variable!r}"
        )
    return path


def excluded(paths, patterns, exclude):
    """Whether each path matches one of `patterns` (from `check_exclude`).

    Raises `ValueError` if every path matches: the optimizer would then change no rate,
    so a pattern is wider than meant (`"dense"` on a model of Dense layers only).
    """
    compiled = [re.compile(pattern) for pattern in patterns or ()]
    matches = [any(p.search(path) for p in compiled) for path in paths]
    if paths and all(matches):
        counts = ", ".join(
            f"{p.pattern!r} matches {sum(bool(p.search(path)) for path in paths)}" for p in compiled
        )
        shown = ", ".join(map(repr, paths[:3])) + (", ..." if len(paths) > 3 else "")
        raise ValueError(
            f"`exclude` excludes every variable ({counts} of the {len(paths)} paths {shown}); "
            "no variable would get a layer-specific rate. Narrow the pattern or leave "
            f"`exclude` out. Received: exclude={exclude!r}"
        )
    return matches


def owner_groups(paths, grouping):
    """The group of each variable path: its layer's path, or the path itself.

    Keras gives two layers of the same name (possible in a subclassed model) the same
    variable paths, `"model/proj/kernel"` for both. A layer's own variables come
    together in `model.trainable_variables` (the layer's, then its sub-layers', each in
    turn), so a path seen again in its group starts the group of the next layer of
    that name: `"model/proj"`, then `"model/proj#2"`, `"model/proj#3"`, in the order of
    `paths`. The numbers depend on the model's structure only, so a rebuilt or reloaded
    model numbers its layers alike, and the factors, saved by position, stay with them.
    Two same-named layers whose variables have different names (a Dense layer, then a
    LayerNormalization) cannot be told apart by their paths and still share a group.
    """
    groups = [path.rpartition("/")[0] or path for path in paths] if grouping == "layer" else paths
    taken = set(groups)  # A suffixed name never takes the name of a real layer.
    latest, counts, result = {}, {}, []  # latest: group -> (name, paths seen in that layer)
    for group, path in zip(groups, paths, strict=True):
        name, seen = latest.get(group, (group, set()))
        if path in seen:
            name, seen = _next_name(group, counts, taken), set()
        latest[group] = (name, seen)
        seen.add(path)
        result.append(name)
    return result


def _next_name(group, counts, taken):
    count = counts.get(group, 1) + 1
    name = f"{group}#{count}"
    while name in taken:
        count += 1
        name = f"{group}#{count}"
    counts[group] = count
    taken.add(name)
    return name
