#!/usr/bin/env bash
# The rust-version declared in Cargo.toml is true: no locked dependency
# needs a newer Rust. (This machine has one toolchain, so the check reads
# what every locked crate declares rather than building with the old one.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu |
    python3 -c '
import json, sys
meta = json.load(sys.stdin)
def ver(v):
    return tuple(int(x) for x in v.split("."))[:3] + (0,) * (3 - len(v.split(".")))
ours = next(p for p in meta["packages"] if p["id"] in meta["workspace_members"])
declared = ours.get("rust_version")
if not declared:
    sys.exit("check-msrv: Cargo.toml declares no rust-version")
used = {n["id"] for n in meta["resolve"]["nodes"]}
needs = sorted(
    ((ver(p["rust_version"]), p["name"], p["version"]) for p in meta["packages"]
     if p.get("rust_version") and p["id"] in used and p["id"] != ours["id"]),
    reverse=True,
)
if not needs:
    sys.exit("check-msrv: no dependency declares a rust-version")
need, name, version = needs[0]
need = ".".join(map(str, need))
if needs[0][0] > ver(declared):
    sys.exit(f"check-msrv: rust-version = {declared} is false: {name} {version} needs {need}")
print(f"check-msrv: rust-version {declared} holds (the newest need: {name} {version}, {need})")
'
