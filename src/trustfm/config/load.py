"""Load a run config from YAML, apply ``key.path=value`` overrides, validate.

Validation errors become :class:`~trustfm.errors.ConfigError` messages that name
the offending key by its dotted path, e.g. ``train.epoch: unknown key``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from trustfm.config.schema import RunConfig
from trustfm.errors import ConfigError


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"train.epochs=2"`` into ``("train.epochs", 2)``; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from None
    return key, value


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that names one key twice (plain YAML keeps the last silently)."""


def _unique_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: the constructor below says what is wrong with it
            continue
        if first != key_node.start_mark.line + 1:
            raise ConfigError(f"key '{key}' appears twice (lines {first} and {key_node.start_mark.line + 1}): keep "
                              "one; YAML would silently drop the first")
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(text: str):
    """``text`` as YAML (the safe subset), refusing duplicate keys with both line numbers (ConfigError)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_mapping(path: str | Path, *, what: str) -> dict:
    """A YAML file whose top level is a mapping (config, policy, rules); one-line :class:`ConfigError` otherwise.

    An empty file is an empty mapping. ``what`` names the file's role in messages.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a file")
    try:
        loaded = load_yaml(path.read_bytes().decode("utf-8"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); is it a {what}?") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_first_line(exc)}") from None
    except (RecursionError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML ({type(exc).__name__})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return loaded


def _first_line(exc: BaseException) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at ``loc`` (minus its last element) in the schema, for suggestions."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        # unwrap Optional[X] / X | None
        args = getattr(annotation, "__args__", None)
        if args:
            annotation = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
        current = annotation
    return list(getattr(current, "model_fields", {}))


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(root)"
        if err["type"] == "extra_forbidden":
            known = _known_keys(RunConfig, loc)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        else:
            msg = err["msg"]
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Read ``path`` (YAML; optional), apply dotted ``overrides``, return a validated config.

    Relative data paths in the file are resolved against the file's folder, so a
    config can sit next to its data.
    """
    tree: dict = {}
    source = "config"
    base: Path | None = None
    if path is not None:
        path = Path(path)
        source = str(path)
        tree = read_yaml_mapping(path, what="config file")
        base = path.resolve().parent
        data = tree.get("data")
        if isinstance(data, dict):
            for key in ("train", "validation", "test"):
                value = data.get(key)
                if isinstance(value, str) and not Path(value).is_absolute():
                    data[key] = str(base / value)
    for key, value in (overrides or {}).items():
        _set_path(tree, key, value)
    try:
        config = RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    # absolute data paths, so the config saved in a run folder reads the same files
    for key in ("train", "validation", "test"):
        value = getattr(config.data, key)
        if value is not None:
            setattr(config.data, key, value.expanduser().resolve())
    return config


def with_overrides(config: RunConfig, overrides: Mapping[str, Any], *, source: str = "config") -> RunConfig:
    """A copy of ``config`` with dotted ``overrides`` applied and validated again (errors name ``source``)."""
    tree = config.model_dump(mode="json")
    for key, value in overrides.items():
        _set_path(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def config_leaf_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config that holds a value (``train.learning_rate``, ``privacy.dp.epsilon``, ...);
    sections (optional ones included) are walked, not listed."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = getattr(annotation, "__args__", None) or (annotation,)
        section = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if section is not None:
            keys += config_leaf_keys(section, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def dump_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (all defaults filled in)."""
    data = config.model_dump(mode="json")
    from trustfm.fileio import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
