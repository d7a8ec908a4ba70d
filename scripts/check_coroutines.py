#!/usr/bin/env python3
"""Fails on a conditional operator inside a co_await statement.

g++ 12 destroys the temporary a `?:` creates inside a co_await full-expression twice (found by
ASan as a double free in Session::authenticate). CONVENTIONS.md says to bind temporaries to a
named local before co_await; this check keeps the sharpest case out of the tree.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
bad = []
for f in sorted((ROOT / "src").rglob("*.cpp")):
    text = f.read_text()
    code = re.sub(r"//[^\n]*", "", text)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)  # '?' inside string literals is fine
    code = re.sub(r"'(?:\\.|[^'\\])'", "''", code)
    for m in re.finditer(r"co_await[^;{}]*;", code):
        if "?" in m.group(0):
            line = code[: m.start()].count("\n") + 1
            bad.append(f"{f.relative_to(ROOT)}:{line}: conditional operator inside a co_await statement; "
                       "compute the value into a named local first (g++ 12 bug)")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("coroutines: ok")
