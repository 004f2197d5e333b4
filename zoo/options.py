r"""Options from the command line, checked before any work starts.

Two kinds of options reach a command, and both are refused by name when they cannot work:

- **Flags** (``--batch-size 64``): argparse parses the type (``--batch-size abc`` is its error);
  the range is checked by :func:`check_arguments` from the checks that :func:`add_option`
  recorded beside each flag (``--batch-size 0``: "--batch-size must be an integer >= 1, got 0").
- **KEY=VALUE pairs** of ``--model-opt``, ``--guide-opt`` and ``--data-opt``: :func:`parse_pairs`
  reads each value as JSON when it parses (numbers, lists, ``true``/``false``, ``null``) and as a
  string otherwise; :func:`check_keywords` then holds the keys against the signature of the
  constructor or loader they are for, with a suggestion for a mistyped one ("did you mean
  'latent_dim'?"), and the values against its annotations or defaults (``latent_dim=abc``,
  ``hidden_dims=400``). Range checks of a model's or guide's options live in its constructor,
  where the option is defined (:mod:`zoo.models.checks`).

:func:`option_rows` describes a constructor's or loader's options (name, type, default) for
``zoo options MODEL``.

    >>> parse_pairs(["hidden_dims=[200,200]", "likelihood=gaussian"], "--model-opt")
    {'hidden_dims': [200, 200], 'likelihood': 'gaussian'}
    >>> from zoo.registry import find_model
    >>> check_keywords(find_model("vae"), {"latnet_dim": 5}, "--model-opt", "model 'vae'")
    Traceback (most recent call last):
    ...
    ValueError: --model-opt latnet_dim: model 'vae' has no option 'latnet_dim'; did you mean 'latent_dim'? Its options: input_dim, latent_dim, hidden_dims, likelihood, activation.
"""  # noqa: E501

from __future__ import annotations

import difflib
import inspect
import json
import math
import numbers
import types
import typing
from pathlib import Path

from zoo.registry import accepted_options


# ------------------------------------------------------------------------------------ flags
def add_option(parser, *flags, check=None, **kwargs):
    """``parser.add_argument(*flags, **kwargs)``, with ``check(value)`` (a sentence fragment such
    as ``"must be an integer >= 1"`` when the value is wrong, else ``None``) recorded for
    :func:`check_arguments`."""
    action = parser.add_argument(*flags, **kwargs)
    if check is not None:
        recorded = parser.get_default("option_checks") or []
        name = action.option_strings[0] if action.option_strings else action.dest
        parser.set_defaults(option_checks=[*recorded, (action.dest, name, check)])
    return action


def add_run_folder_options(parser, resume_flags, overwrite_help: str, **out_kwargs) -> None:
    """``--out`` (checked with :func:`folder`), ``--resume`` (naming ``resume_flags``, the only
    flags that may be given beside it) and ``--overwrite``: what every command that trains
    into a run folder takes."""
    add_option(parser, "--out", required=True, check=folder,
               help="run folder (created if missing)", **out_kwargs)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out exactly, with its config.json (only "
                             f"{', '.join(resume_flags)} may be given beside it)")
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)


def check_arguments(args) -> None:
    """Refuse the first flag whose value fails its check, with a ``ValueError`` naming it."""
    for dest, flag, check in vars(args).get("option_checks") or []:
        value = vars(args).get(dest)
        problem = None if value is None else check(value)
        if problem:
            raise ValueError(f"{flag} {problem}, got {value!r}.")


def at_least(minimum: int):
    """An integer >= ``minimum``."""
    return lambda v: None if _integer(v) and v >= minimum else f"must be an integer >= {minimum}"


def positive(value):
    """A finite number > 0."""
    return None if _finite(value) and value > 0 else "must be a finite number > 0"


def nonnegative(value):
    """A finite number >= 0."""
    return None if _finite(value) and value >= 0 else "must be a finite number >= 0"


def below_one(value):
    """A number in [0, 1) (Adam's betas)."""
    return None if _finite(value) and 0 <= value < 1 else "must be a number in [0, 1)"


def seed(value):
    """What NumPy takes as a seed: an integer in [0, 2**32)."""
    return None if _integer(value) and 0 <= value < 2**32 else "must be an integer in [0, 2**32)"


def device(value):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether the device exists is the engine's
    :func:`~zoo.train.resolve_device`, asked before any work)."""
    index = value[5:] if value.startswith("cuda:") else None
    ok = value in ("auto", "cpu", "cuda") or (index is not None and index.isdigit())
    return None if ok else "must be auto, cpu, cuda or cuda:N"


def folder(value):
    """A folder to write (it may not exist yet), not a file."""
    return "must name a folder (a file is there)" if Path(value).is_file() else None


def not_a_folder(value):
    """A file to write, not an existing folder."""
    return "must name a file (a folder is there)" if Path(value).is_dir() else None


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


# ------------------------------------------------------------------------- KEY=VALUE pairs
def parse_pairs(pairs, flag: str = "--model-opt") -> dict:
    """``["hidden_dims=[200,200]", "likelihood=gaussian"]`` -> dict, values parsed as JSON when
    they parse (numbers, lists, booleans, null), else kept as strings; a pair without ``=`` or
    a key given twice is refused."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {pair!r} is not of the form key=value "
                             f"(e.g. {flag} latent_dim=10).")
        if key in options:
            raise ValueError(f"{flag} {key} is given twice; give each option once.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def parameters(target) -> dict[str, tuple[inspect.Parameter, object]]:
    """``{name: (parameter, type)}`` of the keyword options of a model or guide class (following
    ``**options`` up its bases, :func:`~zoo.registry.accepted_options`) or of a loader function
    (all its keyword parameters but a leading ``path``); the type is the annotation when it
    evaluates, else one read from the default (``None``: anything goes)."""
    if inspect.isclass(target):
        found = accepted_options(target)
        hints = {}
        for klass in reversed(target.__mro__):  # a subclass's annotation wins
            init = klass.__dict__.get("__init__")
            if init is not None:
                hints.update(_hints(init))
    else:
        params = list(inspect.signature(target).parameters.values())
        if params and params[0].name == "path":
            params = params[1:]
        found = {p.name: p for p in params
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        hints = _hints(target)
    return {name: (p, hints[name] if name in hints else _type_of_default(p.default))
            for name, p in found.items()}


def check_keywords(target, options: dict, flag: str, owner: str, reserved=None) -> None:
    """Refuse a key of ``options`` that ``target`` does not take (with the closest name and the
    list of those it takes) or a value of the wrong type, naming ``flag`` and the key.
    ``reserved`` maps keys that are not the user's to set to the reason (``input_dim``: set
    from the data)."""
    params = parameters(target)
    for key, value in options.items():
        if reserved and key in reserved:
            raise ValueError(f"{flag} {key}: {reserved[key]}; leave it out.")
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(f"{flag} {key}: {owner} has no option {key!r}{hint} Its options: "
                             f"{', '.join(params) or 'none'}.")
        expected = params[key][1]
        if not accepts(expected, value):
            example = (f" (e.g. {key}=[{value}])" if _integer(value)
                       and describe(expected).startswith("a list") else "")
            raise ValueError(f"{flag} {key} must be {describe(expected)}{example}, got "
                             f"{value!r}.")


def accepts(expected, value) -> bool:
    """Whether ``value`` (parsed JSON) fits the type ``expected``."""
    if expected is None or expected is typing.Any or expected is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(a, value) for a in args)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return _integer(value)
    if expected is float:
        return _finite(value)
    if expected is str:
        return isinstance(value, str)
    if expected is _Text:
        return value is None or isinstance(value, str)
    if expected in (dict,) or origin is dict:
        return isinstance(value, dict)
    if expected in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(accepts(args[0], v) for v in value)
        if args and origin is tuple:
            return len(args) == len(value) and all(accepts(a, v) for a, v in zip(args, value))
        return all(accepts(args[0], v) for v in value) if args else True
    return True


def describe(expected) -> str:
    """How a type reads in a message: "an integer", "a list of integers", ..."""
    if expected is None or expected is typing.Any or expected is inspect.Parameter.empty:
        return "anything"
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        names = [name for a in args if a is not type(None)
                 for name in (["true", "false"] if a is bool else [describe(a)])]
        names += ["null"] if type(None) in args else []
        return ", ".join(names[:-1]) + " or " + names[-1]
    simple = {bool: "true or false", int: "an integer", float: "a finite number",
              str: "a string", _Text: "a string", dict: "a JSON object", type(None): "null"}
    if expected in simple:
        return simple[expected]
    if expected in (list, tuple) or origin in (list, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(describe(args[0]))}"
        if args and origin is tuple:
            return f"a list of {len(args)} {_plural(describe(args[0]))}"
        return "a list"
    return str(expected)


def option_rows(target, defaults=None) -> list[tuple[str, str, str]]:
    """``(name, type, default)`` of each option of ``target``, the default as JSON (as it is
    typed after ``KEY=``); ``defaults`` replaces some (a model's default guide options)."""
    rows = []
    for name, (param, expected) in parameters(target).items():
        default = (defaults or {}).get(name, param.default)
        shown = "(required)" if default is inspect.Parameter.empty else _json(default)
        rows.append((name, describe(expected).removeprefix("an ").removeprefix("a "), shown))
    return rows


def _json(value) -> str:
    try:
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    except TypeError:
        return repr(value)


def _plural(noun: str) -> str:
    noun = noun.removeprefix("an ").removeprefix("a ")
    return noun + "s" if noun.endswith(("integer", "number", "string")) else noun


def _hints(function) -> dict:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation that does not evaluate: fall back on the defaults
        return {}


class _Text:
    """The type of an unannotated option whose default is a string: a string, or null (as
    scikit-learn's ``stop_words=None``)."""


def _type_of_default(default):
    """The type an unannotated option takes, read from its default: numbers take numbers,
    sequences lists (of integers when the default's are), strings strings or null (scikit-learn's
    ``stop_words=None``); a boolean default
    also lets a string through (``batch_norm=False`` takes ``"shift"``), which the constructor
    then checks; ``None`` or no default: anything."""
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        return bool | str
    if isinstance(default, numbers.Real):
        return float
    if isinstance(default, str):
        return _Text
    if isinstance(default, (list, tuple)):
        return tuple[int, ...] if default and all(_integer(v) for v in default) else list
    if isinstance(default, dict):
        return dict
    return None
