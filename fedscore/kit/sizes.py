"""Sizes a user gives as a share or a count: ``"5%"`` of the users, or ``50000`` of them.

Audience sizes (lookalike), the length of a top list (propensity) and any other size a
marketer picks are read here, so that every command accepts the same spellings.
"""

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Size:
    """A share of some population (``fraction``) or an absolute ``count`` of it.

    Attributes
    ----------
    text : str
        As the user wrote it (``"5%"``, ``"500"``).
    fraction : float or None
        In ``(0, 1]`` for a percentage.
    count : int or None
        At least 1 for a count.
    """

    text: str
    fraction: float = None
    count: int = None

    @property
    def label(self):
        """A file-name-safe label: ``5pct``, ``0_5pct``, ``500``."""
        if self.fraction is not None:
            return f"{self.text[:-1].replace('.', '_')}pct"
        return str(self.count)

    def of(self, population, *, at_least=1):
        """How many of ``population`` users this size takes (at least ``at_least``, at most all)."""
        if self.fraction is not None:
            return int(min(population, max(at_least, round(self.fraction * population))))
        return int(min(population, self.count))

    def share(self, population):
        """This size as a share of ``population`` users (a count divided by it)."""
        return self.fraction if self.fraction is not None else self.count / population


def parse_size(text, what="size"):
    """Parse ``"10%"`` (a share in (0, 100]) or ``"500"`` (a positive count).

    Raises
    ------
    InputError
        Naming ``what`` and the text, for anything else.
    """
    text = str(text).strip()
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100.0
            if not 0 < fraction <= 1:
                raise ValueError
            return Size(text, fraction=fraction)
        count = int(text)
        if count < 1:
            raise ValueError
        return Size(text, count=count)
    except ValueError:
        raise InputError(f"{what} {text!r} is neither a percentage in (0, 100] nor a positive count") from None


def parse_sizes(items, what="size"):
    """Parse ``"1%,5%,10%"`` or a sequence of such items into a list of :class:`Size`."""
    items = items.split(",") if isinstance(items, str) else list(items)
    sizes = [parse_size(item, what) for item in items if str(item).strip()]
    if not sizes:
        raise InputError(f"no {what} given")
    return sizes
