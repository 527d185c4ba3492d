#!/usr/bin/env python3
"""`sealbox scan` beside gitleaks and detect-secrets, in one run on one machine.

Speed: each tool scans the same large real tree (default: the cargo registry sources), N runs
interleaved (sealbox, gitleaks, detect-secrets, sealbox, ...), each writing its JSON report to a
file; the median wall time gives MB/s over the tree's bytes.

Detection: each tool scans `scan/tests/corpus/`; its findings are matched to
`scan/tests/corpus-labels.toml` by file and line (a finding whose file and line are a labelled
credential's file and first line finds it; detect-secrets reports no column, so columns are not
used for any tool). Findings are counted once per (file, line), since tools report one place
under several rules differently. Recall = labels found / labels; precision = reported places
holding a credential / reported places.

Prints the raw figures and one Markdown table (tool, version, MB/s, recall, precision).
Usage: python3 benches/scan/compare.py [--tree DIR] [--runs N] [--sealbox BIN] [--gitleaks BIN]
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(REPO, "scan", "tests", "corpus")
LABELS = os.path.join(REPO, "scan", "tests", "corpus-labels.toml")
REQUIREMENTS = os.path.join(REPO, "scripts", "requirements-bench.txt")
GITLEAKS_INSTALL = "go install github.com/zricethezav/gitleaks/v8@v8.30.1"


def die(msg):
    sys.exit(f"compare.py: {msg}")


def run(cmd, cwd=None, ok=(0,), stdout=None):
    """Runs `cmd`; exit codes in `ok` are success (1 means 'findings' for the scanners)."""
    p = subprocess.run(cmd, cwd=cwd, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode not in ok:
        err = p.stderr.decode(errors="replace").strip()[-2000:]
        die(f"{' '.join(cmd)} exited {p.returncode}: {err}")
    return p


# ---- the tools ---------------------------------------------------------------------------------


def find_sealbox(given):
    if given:
        return given
    for d in (os.environ.get("CARGO_TARGET_DIR"), os.path.join(REPO, "target"), "/work/benchtarget"):
        if d and os.access(os.path.join(d, "release", "sealbox"), os.X_OK):
            return os.path.join(d, "release", "sealbox")
    die(
        "no release sealbox binary found: build one with `cargo build --release -p sealbox-cli` "
        "or pass --sealbox PATH"
    )


def find_gitleaks(given):
    for c in (given, shutil.which("gitleaks"), os.path.expanduser("~/go/bin/gitleaks")):
        if c and os.access(c, os.X_OK):
            return c
    die(f"gitleaks not found: install the pinned version with `{GITLEAKS_INSTALL}` or pass --gitleaks PATH")


def find_detect_secrets(given):
    """A venv under target/ with the pinned detect-secrets (created on first use)."""
    if given:
        return given
    venv = os.path.join(REPO, "target", "bench-venv")
    exe = os.path.join(venv, "bin", "detect-secrets")
    if not os.access(exe, os.X_OK):
        print(f"creating {venv} with {REQUIREMENTS} ...", file=sys.stderr)
        run([sys.executable, "-m", "venv", venv])
        run([os.path.join(venv, "bin", "pip"), "install", "-q", "-r", REQUIREMENTS])
    return exe


def sealbox_version(exe):
    return run([exe, "--version"]).stdout.decode().split()[-1]


def gitleaks_version(exe):
    v = run([exe, "version"]).stdout.decode().strip()
    if v[:1].isdigit() or v[:2] in ("v0", "v1", "v8", "v9"):
        return v.lstrip("v")
    # `go install` builds print "version is set by build process"; the module version is
    # in the binary's build info.
    if shutil.which("go"):
        for line in run(["go", "version", "-m", exe]).stdout.decode().splitlines():
            parts = line.split()
            if parts[:2] == ["mod", "github.com/zricethezav/gitleaks/v8"]:
                return parts[2].lstrip("v")
    return "unknown"


def ds_version(exe):
    return run([exe, "--version"]).stdout.decode().strip()


# Each tool: the command scanning DIR into the JSON file OUT (run with cwd=DIR), the exit codes
# meaning success, and how to read (file relative to DIR, line) places from OUT.


def sealbox_cmd(exe, out):
    return [exe, "scan", "--format", "json", "--no-ignore", "."], (0, 1), out


def gitleaks_cmd(exe, out):
    # --exit-code 0: findings are not an error; --max-decode-depth is left at its default.
    return (
        [exe, "dir", ".", "--no-banner", "--log-level", "error", "--exit-code", "0",
         "--report-format", "json", "--report-path", out],
        (0,),
        None,
    )


def ds_cmd(exe, out):
    # --all-files: every file, not only those git tracks (the corpus is inside a repository).
    return [exe, "scan", "--all-files", "."], (0,), out


def places_sealbox(out):
    doc = json.load(open(out))
    doc = doc.get("data", doc) if isinstance(doc, dict) and "findings" not in doc else doc
    if doc.get("errors"):
        print(f"sealbox reported errors: {doc['errors'][:3]}", file=sys.stderr)
    return [(os.path.normpath(f["path"]), f["line"]) for f in doc["findings"]]


def places_gitleaks(out):
    return [(os.path.normpath(f["File"]), f["StartLine"]) for f in json.load(open(out)) or []]


def places_ds(out):
    doc = json.load(open(out))
    return [
        (os.path.normpath(file), s["line_number"])
        for file, secrets in doc["results"].items()
        for s in secrets
    ]


def scan(tool, exe, root, out):
    """Runs one tool over `root`, its report in `out`; returns the wall time in seconds."""
    cmd, ok, stdout_to = {"sealbox": sealbox_cmd, "gitleaks": gitleaks_cmd, "detect-secrets": ds_cmd}[tool](exe, out)
    with open(stdout_to or os.devnull, "wb") as sink:
        start = time.perf_counter()
        run(cmd, cwd=root, ok=ok, stdout=sink)
        return time.perf_counter() - start


PLACES = {"sealbox": places_sealbox, "gitleaks": places_gitleaks, "detect-secrets": places_ds}


# ---- measuring ---------------------------------------------------------------------------------


def tree_size(root):
    files, size = 0, 0
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files += 1
                size += os.path.getsize(p)
    return files, size


def speed(tools, root, runs, tmp):
    files, size = tree_size(root)
    mb = size / 1e6
    print(f"speed tree: {root}: {mb:.1f} MB in {files} files; {runs} interleaved runs per tool")
    times = {t: [] for t in tools}
    for i in range(runs):
        for tool, exe in tools.items():
            s = scan(tool, exe, root, os.path.join(tmp, f"speed-{tool}.json"))
            times[tool].append(s)
            print(f"  run {i + 1} {tool}: {s:.2f} s ({mb / s:.1f} MB/s)", flush=True)
    return {t: mb / statistics.median(ts) for t, ts in times.items()}, mb, files


def detection(tools, tmp):
    labels = tomllib.load(open(LABELS, "rb"))["credential"]
    wanted = {(os.path.normpath(l["file"]), l["line"]) for l in labels}
    result = {}
    for tool, exe in tools.items():
        out = os.path.join(tmp, f"corpus-{tool}.json")
        scan(tool, exe, CORPUS, out)
        places = set(PLACES[tool](out))
        found = sum(1 for l in labels if (os.path.normpath(l["file"]), l["line"]) in places)
        true_places = places & wanted
        false_places = sorted(places - wanted)
        recall = found / len(labels)
        precision = len(true_places) / len(places) if places else 1.0
        print(
            f"  {tool}: recall {found}/{len(labels)} = {recall:.1%}; precision "
            f"{len(true_places)}/{len(places)} = {precision:.1%}"
        )
        if false_places:
            shown = ", ".join(f"{f}:{n}" for f, n in false_places[:8])
            more = f" (+{len(false_places) - 8} more)" if len(false_places) > 8 else ""
            print(f"    false positives: {shown}{more}")
        result[tool] = (recall, precision)
    return result, len(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_tree = os.path.expanduser("~/.cargo/registry/src")
    ap.add_argument("--tree", default=default_tree, help="the tree to time (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per tool (default: 3)")
    ap.add_argument("--sealbox", help="release sealbox binary (default: target/release/sealbox)")
    ap.add_argument("--gitleaks", help=f"gitleaks binary (default: on PATH or ~/go/bin; install: {GITLEAKS_INSTALL})")
    ap.add_argument("--detect-secrets", dest="ds", help="detect-secrets executable (default: a venv under target/)")
    ap.add_argument("--skip-speed", action="store_true", help="detection only")
    a = ap.parse_args()
    if not os.path.isdir(a.tree) and not a.skip_speed:
        die(f"{a.tree} is not a directory (pass --tree DIR)")

    tools = {
        "sealbox": find_sealbox(a.sealbox),
        "gitleaks": find_gitleaks(a.gitleaks),
        "detect-secrets": find_detect_secrets(a.ds),
    }
    versions = {
        "sealbox": sealbox_version(tools["sealbox"]),
        "gitleaks": gitleaks_version(tools["gitleaks"]),
        "detect-secrets": ds_version(tools["detect-secrets"]),
    }
    for t, exe in tools.items():
        print(f"{t} {versions[t]}: {exe}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="scan-compare-") as tmp:
        print("detection: scan/tests/corpus/ against corpus-labels.toml (file and line)")
        quality, planted = detection(tools, tmp)
        rates, mb = {}, None
        if not a.skip_speed:
            rates, mb, files = speed(tools, os.path.abspath(a.tree), a.runs, tmp)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")

    print()
    if mb is not None:
        print(f"Speed: {mb:.1f} MB in {files} files, median of {a.runs} interleaved runs. "
              f"Detection: {planted} planted credentials, matched by file and line.")
    print()
    print("| tool | version | MB/s | recall | precision |")
    print("|---|---|---:|---:|---:|")
    for t in tools:
        r = f"{rates[t]:.1f}" if t in rates else "-"
        rec, prec = quality[t]
        print(f"| {t} | {versions[t]} | {r} | {rec:.1%} | {prec:.1%} |")


if __name__ == "__main__":
    main()
