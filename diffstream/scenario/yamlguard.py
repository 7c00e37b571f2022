"""Refuse YAML whose aliases expand into something huge (a "billion laughs" document).

PyYAML shares an aliased node instead of copying it, so a nine-line file can describe a
structure of a billion scalars that costs nothing until something walks it: writing the
resolved scenario, or validating ``codec_options`` (which takes any structure). We count
the values the aliases add when the document is expanded, stopping at a bound far above any
real scenario or sweep file, and refuse the file with the line of the key whose value
explodes. A long file without aliases (a steps trace of many thousand steps) is not limited.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from diffstream.errors import ConfigError, located

MAX_NODES = 100_000  # values that aliases may add; a real file's own size does not count


def check_expansion(root: yaml.Node | None, path: Path, limit: int = MAX_NODES) -> None:
    """ConfigError when the document ``root`` expands to more than ``limit`` nodes."""
    if root is None:
        return
    seen: set[int] = set()
    extra = 0  # visits of nodes already visited: what aliases add (a long file adds none)
    # each entry: a node and the line of the mapping key it hangs under (where the alias
    # that brought it in was written, as far as the node graph can tell)
    stack: list[tuple[yaml.Node, int]] = [(root, root.start_mark.line + 1)]
    while stack:
        node, line = stack.pop()
        if id(node) in seen:
            extra += 1
            if extra > limit:
                raise ConfigError(located(
                    path, line, f"the value here expands, through YAML aliases, to more than "
                    f"{limit} values (an alias bomb?); write it out, or use fewer aliases"))
        else:
            seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, line) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append((k, k.start_mark.line + 1))
                stack.append((v, k.start_mark.line + 1))
