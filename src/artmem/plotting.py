"""Matplotlib settings shared by every artmem figure.

Figure labels come from user data (category values, artist names, file names): they are text,
never TeX. Matplotlib parses any label with `$...$` as mathtext by default, so a category value
such as `$\\frac{a$` made the explorer's /categories page, its SVG box plot and `artmem report`
fail. `use_literal_text()` turns that parsing off for the process; the CLI, the web app and the
report figures call it before drawing.
"""

from __future__ import annotations

LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def use_literal_text() -> None:
    """Render every label of this process's figures literally (no mathtext, no TeX)."""
    import matplotlib

    matplotlib.rcParams.update(LITERAL_TEXT)
