"""Writes one section of BENCHMARKS.md between its markers, leaving the other sections as they are.

Each benchmark script (bench.sh, bench-decision.sh, bench-ledger.sh, load.sh) owns one section,
`<!-- NAME:start -->` ... `<!-- NAME:end -->`, and rewrites only that one.
"""


def write_section(name, text, first=False, path="BENCHMARKS.md"):
    """Puts `text` between the markers of section `name`: in place when they exist, else at the top
    of the file (`first`, for the section that carries the file's title) or at its end."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    try:
        with open(path, encoding="utf-8") as f:
            existing = f.read()
    except FileNotFoundError:
        existing = ""
    section = f"{start}\n{text}\n{end}"
    if start in existing and end in existing:
        before, rest = existing.split(start, 1)
        doc = before + section + rest.split(end, 1)[1]
    elif first:
        doc = section + "\n\n" + existing if existing.strip() else section + "\n"
    elif existing.strip():
        doc = existing.rstrip("\n") + "\n\n" + section + "\n"
    else:
        doc = "# Benchmarks\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)
