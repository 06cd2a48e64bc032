"""A griffe extension: names and signatures on the API page are those of the running code.

griffe reads the source without importing it, and two things differ from what Python
does at run time:

- `keras_agd/__init__.py` imports the function `mosaic_dataset` from the submodule of
  the same name, so `keras_agd.mosaic_dataset` is the function. griffe gives the
  submodule precedence over the import, and the page would document a module with the
  function nested under it. `RuntimeNames` points such names back at what the package
  imports.
- A class without an `__init__` of its own (a `NamedTuple`, a Keras callback that takes
  no arguments) gets no signature. `RuntimeSignatures` gives it the one Python reports:
  the fields of a `NamedTuple`, else no arguments. It also writes defaults as the source
  does: strings in double quotes and `1e-7` as such (griffe unparses them as `'mean'` and
  `1e-07`, which the page would show wherever a signature is left unformatted).
"""

import ast
import re

import griffe


class RuntimeNames(griffe.Extension):
    def on_package(self, *, pkg, loader, **kwargs):
        for name, target_path in pkg.imports.items():
            member = pkg.members.get(name)
            if member is None or member.is_alias or not member.is_module:
                continue
            if target_path == member.path:
                continue
            target = loader.modules_collection.get_member(target_path)
            # Assigned directly: `set_member` would also retarget aliases of the submodule.
            pkg.members[name] = griffe.Alias(name, target, parent=pkg)


def _base_path(base):
    try:
        return base.canonical_path
    except (AttributeError, griffe.NameResolutionError):
        return str(base)


class RuntimeSignatures(griffe.Extension):
    def on_class_members(self, *, cls, **kwargs):
        package = cls.package.path
        if "__init__" in cls.members or any(
            _base_path(base).startswith(f"{package}.") for base in cls.bases
        ):
            return  # Its own __init__, or one it may inherit from a class of the package.
        fields = []
        if any(str(base).rsplit(".", 1)[-1] == "NamedTuple" for base in cls.bases):
            fields = [
                griffe.Parameter(
                    member.name,
                    annotation=member.annotation,
                    kind=griffe.ParameterKind.positional_or_keyword,
                    default=member.value,
                )
                for member in cls.members.values()
                if not member.is_alias and member.is_attribute and member.annotation is not None
            ]
        self_parameter = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
        init = griffe.Function(
            "__init__", parameters=griffe.Parameters(self_parameter, *fields), lineno=cls.lineno
        )
        cls.set_member("__init__", init)

    def on_function_instance(self, *, func, **kwargs):
        for parameter in func.parameters:
            default = parameter.default
            if not isinstance(default, str):
                continue
            if default.startswith("'"):
                value = ast.literal_eval(default)
                if isinstance(value, str) and '"' not in value and "\\" not in value:
                    parameter.default = f'"{value}"'
            elif re.fullmatch(r"-?[0-9.]+e[+-]0[0-9]", default):
                parameter.default = re.sub(r"e([+-])0", r"e\1", default)  # 1e-07 -> 1e-7
