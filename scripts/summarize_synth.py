"""Print each synthesized stack of a cloud assembly with its resource count."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def summarize(assembly: Path) -> list[str]:
    """One line per stack: name, resource count and the most common resource types."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    lines = []
    for name, artifact in manifest["artifacts"].items():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        template = json.loads((assembly / artifact["properties"]["templateFile"]).read_text())
        resources = template.get("Resources", {})
        types = Counter(r["Type"].split("::", 1)[1] for r in resources.values())
        top = ", ".join(f"{t} x{n}" for t, n in types.most_common(4))
        lines.append(f"{name:<28} {len(resources):>4} resources  ({top})")
    return lines


def main() -> None:
    assembly = Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")
    lines = summarize(assembly)
    if not lines:
        sys.exit(f"no stacks found in {assembly}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
