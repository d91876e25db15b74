"""One schema per job's options: each option's default, range and help are stated once.

A job's options are a frozen dataclass whose fields are declared with :func:`option`.
From that one declaration come

- the validation of the options a coordinator sends to the parties (unknown names
  refused, values coerced and range-checked): :meth:`Options.from_dict`;
- the command's click options: :func:`click_options`;
- the library function's keyword parameters and their documentation: :func:`with_options`.

Errors name the option the way the user wrote it: ``--min-seed`` on the command line,
``min_seed=`` in Python (:func:`argument`).
"""

import contextvars
import dataclasses
import functools
import inspect
import math
import numbers
import types
import typing

from ..errors import InputError

ANY_PARTY = "party"
"""Role key for what every party of a job does alike (horizontal jobs, symmetric steps)."""

SURFACE = contextvars.ContextVar("fedscore_surface", default="api")
"""``"cli"`` while a command runs, else ``"api"``: how errors spell an option's name."""


def argument(name, value=None):
    """How the user spells option ``name`` (with ``value``) where they are calling fedscore from.

    Examples
    --------
    >>> argument("overwrite", True)
    'overwrite=True'
    """
    if SURFACE.get() == "cli":
        flag = "--" + name.replace("_", "-")
        return flag if value is None or value is True else f"{flag} {value}"
    return f"{name}=" if value is None else f"{name}={value!r}"


def option(default, help, *, required=False, choices=None, low=None, high=None, low_open=False, high_open=False,
           local=False, cli=None, multiple=False, hidden=False):
    """Declare one option of a job.

    Parameters
    ----------
    default
        The value when the user gives none.
    help : str
        One or two sentences for ``--help`` and the library docstring.
    required : bool
        The user must give it (``default`` is then None).
    choices : sequence, optional
        The only values accepted.
    low, high : number, optional
        Inclusive bounds (exclusive with ``low_open`` / ``high_open``).
    local : bool
        A party may set it in its own configuration (node config), which then wins
        over the run's value: its own column names, never a security parameter.
    cli : str, optional
        The command-line flag when not ``--<name>``; ``"--on/--off"`` for a boolean
        with a default of True.
    multiple : bool
        On the command line, repeat the flag to give several values.
    hidden : bool
        Not offered on the command line (tests and benchmarks set it in Python).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "required": required, "choices": None if choices is None else tuple(choices), "low": low, "high": high,
        "low_open": low_open, "high_open": high_open, "local": local, "cli": cli, "multiple": multiple,
        "hidden": hidden})


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """What one role's table must hold.

    Attributes
    ----------
    features : bool
        Every column besides the ID, the label and the ``exclude`` option's columns is
        a feature. False: only the ID column is read (a seed list, PSI).
    label : str or None
        The option that names the label column (labels 1/0, yes/no, true/false or empty
        for a row to score).
    numeric_only : bool
        Every feature must be numeric (text columns must be left out with ``exclude``).
    unique_ids : bool
        Refuse empty and duplicated IDs. False where they are counted and reported
        instead (PSI skips them).
    constant_ok : bool
        Accept a feature column that is constant in this table: in a horizontal job a
        column constant at one party (a store's own region) varies across parties, and
        only the pooled statistics decide.
    """

    features: bool = True
    label: str = None
    numeric_only: bool = False
    unique_ids: bool = True
    constant_ok: bool = False


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every job's options schema. Subclasses are frozen dataclasses of :func:`option` fields.

    Subclasses may define :meth:`check` for rules between options; they set ``job`` to
    the job's name (used in error messages) and ``tables`` to the :class:`TableSpec` of
    each role (:data:`ANY_PARTY` for every party of a horizontal job).
    """

    job = "job"
    tables = {}

    @classmethod
    def from_dict(cls, values):
        """Validate ``values`` (name → value); return the options with defaults filled in.

        Raises
        ------
        InputError
            For an unknown name, a value of the wrong type, out of range or not one of
            the choices, naming the option as the user wrote it.
        """
        values = dict(values or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown {cls.job} option(s): {', '.join(argument(n) for n in unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        missing = [n for n, f in known.items() if f.metadata["required"] and values.get(n) in (None, "")]
        if missing:
            raise InputError(f"{cls.job}: {', '.join(argument(n) for n in missing)} is required")
        hints = typing.get_type_hints(cls)
        coerced = {name: _coerce(name, values[name], hints[name], known[name].metadata)
                   for name in values}
        options = cls(**coerced)
        options.check()
        return options

    def check(self):
        """Rules between options (override); raise :class:`InputError` naming the options."""

    def check_inputs(self, role, inputs):
        """Rules of the job on a party's validated table (override): a minimum seed size, say.

        ``inputs`` is a :class:`fedscore.kit.inputs.PartyInputs`; raise :class:`InputError`
        naming the file and column. Runs at the party, before any exchange.
        """

    def to_dict(self):
        """The options as JSON-serialisable values (what crosses to the parties)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        """A copy with ``changes``, validated again."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def local(self, name, config):
        """Option ``name`` as one party sees it: its own config's value when the option is local."""
        field = next(f for f in dataclasses.fields(self) if f.name == name)
        if field.metadata["local"] and config.get(name) not in (None, ""):
            return config[name]
        return getattr(self, name)


MIN_CATEGORY_COUNT = 20
"""Default ``min_category_count``: a text value held by fewer rows is merged into ``<other>``.
Clean rooms release nothing about fewer than 20-50 users (BRIEF, "minimum segment/row size");
bench_attacks measured the lone users' seed membership at AUC 0.57 with merging below 20
alone (0.80 without); the data sets of bench_quality have no text value that rare, so it
costs them nothing."""

OUTLIER_QUANTILE = 0.005
"""Default ``outlier_quantile``: numeric values are winsorised to their [0.5 %, 99.5 %]
quantiles. A user with an extreme value otherwise dominates an aggregate's column
(bench_attacks: seed membership of such users at AUC 1.0 without limits, 0.65 with this
limit alone and within chance with label DP); 0.5 % changes at most 1 % of each column's
values. bench_quality: the central lookalike model loses 0.002 AUC on bank marketing and
0.03 / 0.02 on the small breast / wholesale tables, propensity none."""

LABEL_DP_EPSILON = 4.0
"""Default label-DP epsilon of the jobs whose media trains on the brand's labels (lookalike,
propensity): one Gaussian release of the label aggregate, delta 1e-6. Chosen in
bench_attacks and bench_quality: with the encoding limits above, the attacks of a media
with rare data stay at chance (epsilon 2 measured no lower), and the lookalike's AUC on the
whole of bank marketing and default_credit moves by less than 0.004; small tables pay
more: about 0.1 on breast's 569 users (see benchmarks/RESULTS.md)."""


MODEL_KEY = "model"
"""Party config of a job that uses a trained two-party model again (:mod:`fedscore.kit.halves`):
this party's half, its ``model.json``, the party's own folder of the training run
(``DIR/<role>/``) or the run's folder (``DIR``, of which only ``DIR/<role>/`` is read). Local
to the party like its data path: never sent to anyone."""


@dataclasses.dataclass(frozen=True)
class EncodingOptions(Options):
    """The options of every job whose parties encode feature columns: how rare values and outliers are limited.

    Each party applies them to its own rows (:class:`fedscore.kit.encoder.FeatureEncoder`);
    the model file records them, so that scoring encodes as training did.
    """

    min_category_count: int | None = option(
        MIN_CATEGORY_COUNT, "Text values held by fewer rows than this (at each party, on its own rows) are merged "
        "into one '<other>' column, so that no released aggregate stands for a handful of users; 1 or 'none' turns "
        "it off.", low=1)
    outlier_quantile: float | None = option(
        OUTLIER_QUANTILE, "Numeric values are limited to the [q, 1 - q] quantiles of the party's own rows before "
        "they are standardised, so that no outlying user dominates an aggregate; 0 or 'none' turns it off.", low=0,
        high=0.5, high_open=True)

    def __post_init__(self):
        # q = 0 limits nothing: one value (None) for "off" wherever the options are read
        if self.outlier_quantile == 0:
            object.__setattr__(self, "outlier_quantile", None)

    def encoder(self, path=None):
        """A :class:`~fedscore.kit.encoder.FeatureEncoder` with these limits (imported here: it is heavy)."""
        from .encoder import FeatureEncoder

        return FeatureEncoder(path, min_category_count=self.min_category_count,
                              outlier_quantile=self.outlier_quantile)


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _optional(hint):
    """``(inner type, whether None is allowed)`` of a type hint such as ``float | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner[0], len(inner) < len(typing.get_args(hint))
    return hint, False


def _coerce(name, value, hint, meta):
    kind, nullable = _optional(hint)
    if nullable and isinstance(value, str) and value.strip().lower() == "none":
        value = None  # how a command line or run config turns off an option whose default is on
    if value is None:
        if nullable:
            return None
        raise InputError(f"{argument(name)} needs a value")
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{argument(name)} must be a list, not {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(_coerce(name, v, item, meta) for v in value)
    result = _scalar(name, value, kind)
    if meta["choices"] is not None and result not in meta["choices"]:
        raise InputError(f"{argument(name)} must be one of {', '.join(map(str, meta['choices']))}, not {value!r}")
    _check_range(name, result, meta)
    return result


def _scalar(name, value, kind):
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise InputError(f"{argument(name)} must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InputError(f"{argument(name)} must be a whole number, not {value!r}")
    if kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise InputError(f"{argument(name)} must be a number, not {value!r}") from None
        else:
            raise InputError(f"{argument(name)} must be a number, not {value!r}")
        if math.isnan(result):
            raise InputError(f"{argument(name)} must be a number, not NaN")
        return result
    if kind is str:
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            return str(value)
        raise InputError(f"{argument(name)} must be text, not {value!r}")
    raise TypeError(f"option {name!r} has an unsupported type {kind!r}")


def _check_range(name, value, meta):
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        word = "greater than" if meta["low_open"] else "at least"
        raise InputError(f"{argument(name)} must be {word} {low}, not {value!r}")
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        word = "less than" if meta["high_open"] else "at most"
        raise InputError(f"{argument(name)} must be {word} {high}, not {value!r}")


# --- the two surfaces ---------------------------------------------------------------------

def cli_fields(schema):
    """The fields of ``schema`` offered on the command line: the job's own first, then inherited ones."""
    def depth(field):
        return next(i for i, cls in enumerate(schema.__mro__) if field.name in cls.__dict__.get("__annotations__", {}))

    fields = [f for f in dataclasses.fields(schema) if not f.metadata["hidden"]]
    return sorted(fields, key=depth)


def click_options(schema):
    """A decorator adding one click option per field of ``schema`` (values are validated by the schema).

    Click parses text only; ranges, choices and rules between options are checked by
    :meth:`Options.from_dict`, so the command line and Python refuse the same values
    with the same words.
    """
    import click

    hints = typing.get_type_hints(schema)

    def decorate(command):
        for field in reversed(cli_fields(schema)):
            command = click.option(*_click_declaration(field), **_click_settings(field, hints[field.name]))(command)
        return command

    return decorate


def _click_declaration(field):
    flag = field.metadata["cli"] or "--" + field.name.replace("_", "-")
    return flag, field.name


def _click_settings(field, hint):
    import click

    meta = field.metadata
    kind, _ = _optional(hint)
    settings = {"help": meta["help"], "show_default": field.default not in (None, (), False),
                "required": meta["required"]}
    if kind is bool:
        if "/" in (meta["cli"] or ""):
            return {**settings, "default": field.default}
        return {**settings, "is_flag": True, "default": field.default, "show_default": False}
    if meta["multiple"]:
        return {**settings, "multiple": True, "default": field.default, "show_default": False}
    if typing.get_origin(kind) is tuple:
        return {**settings, "default": ",".join(map(str, field.default))}
    if meta["choices"] is not None:
        return {**settings, "type": click.Choice([str(c) for c in meta["choices"]]), "default": field.default}
    return {**settings, "type": str, "default": None if field.default is None else str(field.default)}


def with_options(schema):
    """Make a library function take ``schema``'s options as keyword arguments.

    The decorated function is written as ``f(..., options)``; callers pass the options
    by name (``f(..., min_seed=200)``), which are validated into a ``schema`` instance.
    Its signature and docstring list every option, with its default and help.
    """
    fields = dataclasses.fields(schema)

    def decorate(function):
        signature = inspect.signature(function)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        own_names = {p.name for p in own}

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            # Anything that is not the function's own parameter is an option: the schema
            # refuses unknown names with the list of known ones.
            given = {k: kwargs.pop(k) for k in list(kwargs) if k not in own_names}
            return function(*args, options=schema.from_dict(given), **kwargs)

        extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for f in fields]
        wrapper.__signature__ = signature.replace(parameters=own + extra)
        wrapper.__doc__ = (function.__doc__ or "").rstrip() + "\n\n" + options_doc(schema)
        wrapper.options = schema
        return wrapper

    return decorate


def options_doc(schema):
    """A numpydoc "Options" section for ``schema``: each option, its default and its help."""
    lines = ["    Options", "    -------"]
    for field in dataclasses.fields(schema):
        lines.append(f"    {field.name} : default {field.default!r}")
        lines.append(f"        {field.metadata['help']}")
    return "\n".join(lines) + "\n"
