"""A plain-text table with wrapped cells: readable in any terminal and in CI logs."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> str:
    def line(cells: Sequence[str]) -> list[str]:
        wrapped = [textwrap.wrap(cell, width) or [""] for cell, width in zip(cells, widths, strict=True)]
        height = max(len(parts) for parts in wrapped)
        return [
            "| " + " | ".join((parts[i] if i < len(parts) else "").ljust(width)
                              for parts, width in zip(wrapped, widths, strict=True)) + " |"
            for i in range(height)
        ]  # fmt: skip

    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    output = [rule, *line(headers), rule.replace("-", "=")]
    for row in rows:
        output += [*line(row), rule]
    return "\n".join(output)
