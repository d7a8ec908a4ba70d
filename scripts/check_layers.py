#!/usr/bin/env python3
"""Fails when an #include crosses the module layers in ../shared/DESIGN.md.

Each module may include its own headers and those of the modules listed for it here.
Third-party rules: only `sql` includes <pg_query.h>; `protocol` includes no asio.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"
ALLOWED = {
    "base": set(),
    "protocol": {"base"},
    "sql": {"base"},
    "identity": {"base"},
    "store": {"base"},
    "net": {"base"},
    "policy": {"base", "sql", "identity"},
    "masking": {"base", "sql", "policy"},
    "config": {"base", "identity", "policy", "masking", "sql"},
    "audit": {"base", "store", "policy", "identity", "config", "sql"},
    "approvals": {"base", "store", "policy", "identity", "config", "audit"},
    "proxy": {"base", "protocol", "sql", "identity", "store", "net", "policy", "masking", "config", "audit",
              "approvals"},
    "admin": {"base", "net", "identity", "store", "policy", "config", "audit", "approvals"},
    "app": None,  # everything
}
FORBIDDEN_SYSTEM = {
    "pg_query.h": {"sql"},
}
NO_IO = {"protocol", "policy", "masking", "base", "sql"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def main() -> int:
    errors = []
    for path in sorted(ROOT.rglob("*")):
        if path.suffix not in {".h", ".hpp", ".cpp", ".cc"}:
            continue
        module = path.relative_to(ROOT).parts[0]
        if module not in ALLOWED:
            errors.append(f"{path}: module '{module}' is not in the layer table (scripts/check_layers.py)")
            continue
        allowed = ALLOWED[module]
        for kind, inc in INCLUDE.findall(path.read_text(errors="replace")):
            if kind == '"':
                dep = inc.split("/")[0]
                if dep == module or allowed is None:
                    continue
                if dep not in ALLOWED:
                    errors.append(f"{path}: includes \"{inc}\" which is not under a known module")
                elif dep not in allowed:
                    errors.append(f"{path}: module '{module}' must not include '{dep}' (\"{inc}\")")
            else:
                owners = FORBIDDEN_SYSTEM.get(inc)
                if owners is not None and module not in owners:
                    errors.append(f"{path}: only {sorted(owners)} may include <{inc}>")
                if module in NO_IO and (inc.startswith("asio") or inc.startswith("spdlog") or inc == "httplib.h"):
                    errors.append(f"{path}: module '{module}' must not do I/O or logging (<{inc}>)")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_layers: {len(errors)} violation(s)", file=sys.stderr)
        return 1
    print("check_layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
