"""``fedscore horizontal``: protocols for N parties holding rows with the same tag schema."""

from . import main


@main.group()
def horizontal():
    """Horizontal protocols: N parties with the same columns, different rows."""
