"""Custom systems declared in YAML: an in-house REST API described as data, validated into the same `System` spec
the Python connectors use, so it gets extract assets and sync writers with no Python written for it.

Where they come from: `integration_pipelines/custom_systems/*.yaml` (the shipped examples) and every `*.yaml` in
the folder named by `IP_CUSTOM_SYSTEMS_DIR`. The format is documented in docs/custom-systems.md.

Why our own loader instead of `yaml.safe_load`: a validation error must say *where* to fix it. The document is
composed into YAML nodes (which carry line and column), turned into plain data while recording the position of
every key and list item, and each pydantic error's location is mapped back to the line of the key at fault,
with a fix in words (the allowed keys and the closest one for a typo, the paginator types that exist ...).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigurationError
from .spec import System

CUSTOM_DIR_ENV = "IP_CUSTOM_SYSTEMS_DIR"
PACKAGED_DIR = Path(__file__).resolve().parent.parent / "custom_systems"

_FIX_FOR_MISSING = {
    "name": "add `name: <lowercase_identifier>`; it becomes the asset group and the `raw_<name>` schema",
    "title": "add `title: <the name people use for this system>`",
    "category": "add `category: <crm | accounting | erp | project_management | ...>`",
    "base_url": "add `base_url: https://<host of the real API>`",
    "values": "add `values:` with one entry per environment variable (env, sandbox, secret)",
    "auth": "add `auth:` with `kind: bearer | header | basic | oauth2 | none`",
    "streams": "add `streams:`, a list with at least one stream",
    "request": "add `request:` with at least `path: /the/list/endpoint`",
    "path": "add `path: /the/endpoint` (relative to base_url)",
    "primary_key": "add `primary_key: <the field that identifies a record, e.g. id>`; records are upserted by it",
    "env": "add `env: <ENVIRONMENT_VARIABLE_NAME>`",
    "sandbox": "add `sandbox: <the fake value the sandbox twin accepts>`",
    "token": "add `token: <name of the values entry holding the token>`",
}


Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path or '(document)'}: {self.message}"


class CustomSystemError(ConfigurationError):
    """A custom system file that cannot be loaded; `issues` hold file, line, key and fix of each problem."""

    def __init__(self, file: str, issues: Sequence[Issue]) -> None:
        self.file = file
        self.issues = list(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        count = f"{len(self.issues)} problem{'s' if len(self.issues) != 1 else ''}"
        super().__init__(f"custom system {file} is invalid ({count}):\n{lines}")


# -- YAML with positions --------------------------------------------------------------------------------
# A spec file is a few hundred values; these bounds only stop hostile or broken files early, with a message,
# instead of letting them exhaust memory or the stack: aliases that expand exponentially ("billion laughs" in
# YAML), an alias that refers to its own ancestor (a cycle), thousands of nested brackets, a huge file.
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 20_000
MAX_DEPTH = 40


def _fatal(file: str, line: int, column: int, message: str) -> CustomSystemError:
    return CustomSystemError(file, [Issue(file, line, column, "", message)])


def _unreadable(file: str, text: str, exc: yaml.reader.ReaderError) -> CustomSystemError:
    """A control character (NUL ...) that YAML does not allow anywhere in a file, at its line and column."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    return _fatal(file, line, column, f"not valid YAML: character U+{code:04X} is not allowed in a YAML file; "
                  "remove it (or write it as an escape inside a double-quoted string).")


def _compose(text: str, file: str) -> tuple[Any, dict[Location, tuple[int, int]]]:
    """Plain data plus the (line, column) of every key and list item, 1-based."""
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters (NUL ...) right here
    except yaml.reader.ReaderError as exc:
        raise _unreadable(file, text, exc) from None
    try:
        node = loader.get_single_node()
        marks: dict[Location, tuple[int, int]] = {}
        issues: list[Issue] = []
        building: set[int] = set()  # ids of the collection nodes being built: an alias back to one is a cycle
        count = 0

        def build(current: yaml.Node, path: Location) -> Any:
            nonlocal count
            count += 1
            line, column = current.start_mark.line + 1, current.start_mark.column + 1
            if count > MAX_VALUES:
                raise _fatal(file, line, column, f"more than {MAX_VALUES} values once anchors and aliases are "
                             "expanded; a system needs far fewer. Write the repeated parts out, or use fewer "
                             "aliases (`*name`) of large anchors.")
            if len(path) > MAX_DEPTH:
                raise _fatal(file, line, column, f"nested more than {MAX_DEPTH} levels deep; a system description "
                             "is never that deep. Check the brackets and indentation here.")
            if isinstance(current, yaml.CollectionNode):
                if id(current) in building:
                    raise _fatal(file, line, column, "an alias (`*name`) refers to a mapping or list that contains "
                                 "it, which would never end; replace the alias with the values it should hold.")
                building.add(id(current))
                try:
                    return build_collection(current, path)
                finally:
                    building.discard(id(current))
            return construct(current)

        def construct(current: yaml.Node) -> Any:
            try:
                return loader.construct_object(current, deep=True)
            except (ValueError, OverflowError) as exc:  # an int of 5,000 digits, a date like 2026-02-31 ...
                line, column = current.start_mark.line + 1, current.start_mark.column + 1
                raise _fatal(file, line, column, f"this value cannot be read ({str(exc)[:120]}); quote it if it "
                             "is meant as text.") from None

        def build_collection(current: yaml.CollectionNode, path: Location) -> Any:
            if isinstance(current, yaml.MappingNode):
                out: dict[str, Any] = {}
                for key_node, value_node in current.value:
                    mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]` would not even be hashable
                        issues.append(Issue(file, *mark, _dotted(path), "a key must be plain text, not a list or "
                                            "a mapping; write `name: value`."))
                        continue
                    key = construct(key_node)
                    where = (*path, key)
                    if key in out:
                        issues.append(Issue(file, *mark, _dotted(where), f"key {key!r} appears twice in this "
                                            f"mapping (first at line {marks[where][0]}); keep one"))
                    marks[where] = mark
                    out[key] = build(value_node, where)
                return out
            items = []
            for index, item in enumerate(current.value):
                marks[(*path, index)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(build(item, (*path, index)))
            return items

        if node is None:
            raise CustomSystemError(file, [Issue(file, 1, 1, "", "the file is empty; describe one system in it")])
        marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
        data = build(node, ())
        if issues:
            raise CustomSystemError(file, issues)
        return data, marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise CustomSystemError(file, [Issue(file, line, column, "", f"not valid YAML: {exc.problem or exc}. "
                                             "Fix the indentation or quoting at this line.")]) from exc
    except yaml.reader.ReaderError as exc:
        raise _unreadable(file, text, exc) from None
    except RecursionError:  # the composer itself recurses per nesting level
        raise _fatal(file, 1, 1, f"nested too deeply to read (more than {MAX_DEPTH} levels are never needed); "
                     "check the brackets and indentation.") from None
    finally:
        loader.dispose()


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- pydantic errors → lines -------------------------------------------------------------------------------
def _models(annotation: Any) -> list[type[BaseModel]]:
    if get_origin(annotation) is Annotated:
        return _models(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _tag(model: type[BaseModel]) -> Any:
    for name in ("type", "kind"):
        field = model.model_fields.get(name)
        if field is not None:
            return field.default
    return None


def _allowed_keys(loc: Sequence[str | int]) -> list[str]:
    """The keys a mapping at `loc` may hold, by walking the spec models (union tags pick the variant)."""
    candidates: list[type[BaseModel]] = [System]
    skip_next = False
    for part in loc:
        if skip_next or isinstance(part, int):
            skip_next = False
            continue
        tagged = [m for m in candidates if _tag(m) == part]
        if tagged and len(candidates) > 1:
            candidates = tagged
            continue
        following: list[type[BaseModel]] = []
        for model in candidates:
            field = model.model_fields.get(str(part))
            if field is not None:
                following += _models(field.annotation)
                skip_next = get_origin(field.annotation) is dict
        if not following:
            return []
        candidates = following
    return sorted({name for model in candidates for name in model.model_fields})


def _locate(loc: Sequence[str | int], data: Any, marks: dict[Location, tuple[int, int]]) -> Location:
    """The longest prefix of `loc` present in the document (union tags and missing keys are skipped)."""
    found: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            continue
        node = node[part]
        found.append(part)
    return tuple(found)


def _issue(error: Any, file: str, data: Any, marks: dict[Location, tuple[int, int]]) -> Issue:
    loc = tuple(error["loc"])
    kind = error["type"]
    present = _locate(loc, data, marks)
    line, column = marks.get(present, marks[()])
    data_loc = [p for p in loc if p in present or isinstance(p, int)]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return Issue(file, line, column, _dotted(present), f"unknown key {key!r}.{hint} Allowed here: "
                     f"{', '.join(allowed)}." if allowed else f"unknown key {key!r}; remove it.")
    if kind == "missing":
        key = str(loc[-1])
        fix = _FIX_FOR_MISSING.get(key, f"add `{key}: ...`")
        return Issue(file, line, column, _dotted([*present, key]), f"required key {key!r} is missing. Fix: {fix}.")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = error.get("ctx", {})
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        tag_mark = marks.get((*present, discriminator), (line, column))
        expected = ctx.get("expected_tags", "")
        if kind == "union_tag_not_found":
            message = f"needs `{discriminator}:`; use one of {expected}."
        else:
            message = (f"{discriminator} {ctx.get('tag')!r} is not known. Fix: use one of {expected} "
                       "(docs/custom-systems.md describes each).")
        return Issue(file, *tag_mark, _dotted([*present, discriminator]), message)
    shown = error.get("input")
    text = repr(shown)
    got = f" (got {text if len(text) <= 80 else text[:77] + '...'})" if not isinstance(shown, (dict, list)) else ""
    return Issue(file, line, column, _dotted(data_loc or present), f"{error['msg']}{got}.")


# -- loading ---------------------------------------------------------------------------------------------
def load_custom_file(path: Path) -> System:
    """One YAML file → one validated `System`, or a `CustomSystemError` naming file, line, key and fix."""
    file = str(path)
    raw = path.read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise _fatal(file, 1, 1, f"the file is {len(raw)} bytes; a system description is a few kilobytes (the "
                     f"limit is {MAX_FILE_BYTES}). Is this the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fatal(file, line, column, f"not UTF-8 text (byte {raw[exc.start]:#04x}); save the file as "
                     "UTF-8.") from None
    data, marks = _compose(text, file)
    if not isinstance(data, dict):
        raise CustomSystemError(file, [Issue(file, *marks[()], "", "the document must be a mapping of keys "
                                             "(name, title, base_url, values, auth, streams ...)")])
    if "source_file" in data:
        raise CustomSystemError(file, [Issue(file, *marks[("source_file",)], "source_file",
                                             "`source_file` is set by the loader; remove it")])
    try:
        system = System.model_validate({**data, "source_file": file})
    except ValidationError as exc:
        issues = [_issue(error, file, data, marks) for error in exc.errors()]
        issues.sort(key=lambda issue: (issue.line, issue.column))
        raise CustomSystemError(file, issues) from None
    issues = _foreign_variables(system, file, marks)
    if issues:
        raise CustomSystemError(file, issues)
    return system


def _reserved_variables() -> dict[str, str]:
    """Every variable a built-in connector reads (each purpose's and `_FILE` forms too) → that system's title."""
    from .registry import _python_systems  # the registry imports this module: only when a file is checked
    from .runtime import PURPOSES, purpose_variable
    from .secrets import FILE_SUFFIX

    reserved: dict[str, str] = {}
    for system in _python_systems():
        for spec in system.values.values():
            for name in (spec.env, *(purpose_variable(system, spec.env, p) for p in PURPOSES)):
                reserved[name] = reserved[name + FILE_SUFFIX] = system.title
    return reserved


def _foreign_variables(system: System, file: str, marks: dict[Location, tuple[int, int]]) -> list[Issue]:
    """A custom system reads only variables named with its own prefix (`PM_TOOL_...`), and none that a built-in
    connector reads: a YAML file must not be a way to send `STRIPE_API_KEY` (or `AWS_SECRET_ACCESS_KEY`, or any
    other variable of the process) to a URL of its choosing, as a header, a path or a "non-secret" value."""
    prefix = f"{system.env_prefix}_"
    reserved = _reserved_variables()
    issues: list[Issue] = []
    for key, spec in system.values.items():
        line, column = marks.get(("values", key, "env"), marks.get(("values", key), marks[()]))
        where = f"values.{key}.env"
        if spec.env in reserved:
            issues.append(Issue(file, line, column, where, f"{spec.env} belongs to {reserved[spec.env]}; a custom "
                                "system cannot read another system's credentials. Give this system its own variable, "
                                f"named {prefix}<SOMETHING>."))
        elif not spec.env.startswith(prefix) or spec.env == prefix:
            issues.append(Issue(file, line, column, where, f"{spec.env} is not named with this system's prefix "
                                f"{prefix}; a custom system reads only its own variables (for example "
                                f"{prefix}{key.upper()}), so it can never pick up another variable of the process."))
    return issues


def custom_system_files(folder: str | None = None) -> list[Path]:
    folders = [PACKAGED_DIR]
    user = folder if folder is not None else os.environ.get(CUSTOM_DIR_ENV)
    if user:
        user_path = Path(user).expanduser()
        if not user_path.is_dir():
            raise ConfigurationError(f"{CUSTOM_DIR_ENV}={user} is not a folder; point it at the folder holding "
                                     "your custom system YAML files, or unset it.")
        folders.append(user_path)
    return [file for base in folders for file in sorted([*base.glob("*.yaml"), *base.glob("*.yml")])]


def load_custom_systems(folder: str | None = None) -> tuple[System, ...]:
    """Every custom system; two files declaring the same name is an error that names both."""
    systems: dict[str, System] = {}
    readers: dict[str, System] = {}
    for file in custom_system_files(folder):
        system = load_custom_file(file)
        if system.name in systems:
            raise ConfigurationError(
                f"custom systems {systems[system.name].source_file} and {file} are both named {system.name!r}; "
                "rename one (the name is the asset group and the warehouse schema)."
            )
        for spec in system.values.values():
            other = readers.setdefault(spec.env, system)
            if other is not system:
                raise ConfigurationError(
                    f"custom systems {other.source_file} and {file} both read {spec.env}; each system reads only "
                    f"its own variables: rename the one in {file} to start with {system.env_prefix}_.")
        systems[system.name] = system
    return tuple(systems.values())
