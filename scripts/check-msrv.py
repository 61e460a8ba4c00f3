#!/usr/bin/env python3
"""The declared minimum Rust version holds: no dependency in Cargo.lock declares a newer
`rust-version` than tunelab's own, and the toolchain here is at least that version.
(Our own code is held to it by clippy's `incompatible_msrv` lint, which reads the same
field.) Only one toolchain can be installed on the CI machines, so building with the
minimum itself is not possible there."""
import json
import re
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
root = next(p for p in meta["packages"] if p["name"] == "tunelab")
declared = root.get("rust_version")
if not declared:
    sys.exit("Cargo.toml declares no rust-version")
too_new = [
    (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p.get("rust_version") and version(p["rust_version"]) > version(declared)
]
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout
have = re.search(r"rustc (\d+\.\d+\.\d+)", rustc).group(1)
print(f"rust-version {declared}; toolchain {have}; {len(meta['packages'])} packages checked")
if too_new:
    for name, ver, rv in too_new:
        print(f"  {name} {ver} needs Rust {rv}")
    sys.exit(f"dependencies need a newer Rust than the declared rust-version {declared}")
if version(have) < version(declared):
    sys.exit(f"the toolchain {have} is older than the declared rust-version {declared}")
