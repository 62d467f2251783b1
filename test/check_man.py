#!/usr/bin/env python3
"""Description: the manual pages cover the API, render cleanly, and agree with the headers.

Usage: check_man.py MAN_DIR INCLUDE_DIR SRC_DIR [--relay PATH] LIB.so...

  1. every symbol a shared library exports (nm -D --defined-only) has man3/SYMBOL.3, a
     page or a ".so man3/PAGE.3" link to one that exists;
  2. every page renders with groff's warnings on (groff -man -ww -z) and prints nothing;
  3. every -E... code in a function's kernel-doc ("Return:" and the text around it) in
     the installed header, and in its definition's kernel-doc under SRC_DIR, is named on
     its page; for tide.h, also: the header names every code the source names (the
     installed header carries the whole contract);
  4. with --relay, every --option of "tide-relay --help" is on tide-relay.1.
Prints one line per problem and a closing count; exits 1 on any problem.
"""
import os
import re
import subprocess
import sys

problems = []


def problem(msg):
    problems.append(msg)
    print("FAIL: " + msg)


def kerneldoc(path):
    """{function: text} of every /** name() - ... */ block (or a /* name - ... */ one)."""
    text = open(path, encoding="utf-8").read()
    docs = {}
    for m in re.finditer(r"/\*\*?\s*\n?\s*\*?\s*(tide_\w+)(?:\(\))?\s+-\s(.*?)\*/", text, re.S):
        docs.setdefault(m.group(1), "")
        docs[m.group(1)] += m.group(2)
    return docs


def errnos(text):
    return set(re.findall(r"-E[A-Z0-9]+\b", text))


def page_of(man, sym):
    """The text of sym's page, following one .so link; None when there is none."""
    path = os.path.join(man, "man3", sym + ".3")
    if not os.path.exists(path):
        return None, None
    text = open(path, encoding="utf-8").read()
    m = re.match(r"\.so\s+(\S+)\s*$", text)
    if m:
        target = os.path.join(man, m.group(1))
        if not os.path.exists(target):
            return None, None
        return target, open(target, encoding="utf-8").read()
    return path, text


def main(argv):
    relay = None
    if "--relay" in argv:
        i = argv.index("--relay")
        relay = argv[i + 1]
        del argv[i:i + 2]
    man, inc, src, libs = argv[0], argv[1], argv[2], argv[3:]

    symbols = []
    for lib in libs:
        out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True,
                             text=True, check=True).stdout
        syms = sorted({line.split()[2].split("@")[0] for line in out.splitlines()
                       if len(line.split()) == 3 and line.split()[1] in "TDBRW"
                       and line.split()[2].startswith("tide_")})
        if not syms:
            problem(f"{lib} exports no tide_ symbol")
        print(f"{os.path.basename(lib)}: {len(syms)} exported functions")
        symbols += syms

    headers = {"tide.h": kerneldoc(os.path.join(inc, "tide.h"))}
    net_h = os.path.join(inc, "tide", "net.h")
    if os.path.exists(net_h):
        headers["tide/net.h"] = kerneldoc(net_h)
    srcdocs = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith(".c"):
                for k, v in kerneldoc(os.path.join(root, f)).items():
                    srcdocs[k] = srcdocs.get(k, "") + v

    for sym in symbols:
        path, text = page_of(man, sym)
        if text is None:
            problem(f"{sym}: no page man3/{sym}.3 (or its .so target is missing)")
            continue
        if not re.search(r"\\fB%s\\fP|\.BR?I? %s\b|\b%s\b" % (sym, sym, sym), text):
            problem(f"{sym}: its page {os.path.basename(path)} does not name it")
        hdr = next((h for h, d in headers.items() if sym in d), None)
        if hdr is None:
            problem(f"{sym}: no kernel-doc in the installed headers")
            continue
        in_hdr, in_src = errnos(headers[hdr][sym]), errnos(srcdocs.get(sym, ""))
        if hdr == "tide.h" and in_src - in_hdr:
            problem(f"{sym}: tide.h does not name {' '.join(sorted(in_src - in_hdr))}, which "
                    f"its definition's kernel-doc does")
        on_page = set(re.findall(r"\\-(E[A-Z0-9]+)\b", text))
        missing = {e[1:] for e in in_hdr | in_src} - on_page
        if missing:
            problem(f"{sym}: {os.path.basename(path)} does not name {' '.join(sorted(missing))}")

    pages = sorted(os.path.join(d, f) for d in ("man1", "man3", "man7")
                   if os.path.isdir(os.path.join(man, d))
                   for f in os.listdir(os.path.join(man, d)))
    for page in pages:
        r = subprocess.run(["groff", "-man", "-ww", "-z", page], cwd=man, capture_output=True,
                           text=True)
        if r.returncode or r.stderr.strip():
            problem(f"{page}: groff -man -ww -z: {r.stderr.strip() or 'exit %d' % r.returncode}")
    print(f"{len(pages)} pages rendered with groff -man -ww -z")

    if relay:
        out = subprocess.run([relay, "--help"], capture_output=True, text=True).stdout
        page = open(os.path.join(man, "man1", "tide-relay.1"), encoding="utf-8").read()
        page = page.replace("\\-", "-")
        opts = sorted(set(re.findall(r"--[a-z][a-z-]*", out)))
        for o in opts:
            if o not in page:
                problem(f"tide-relay.1 does not describe {o} (tide-relay --help has it)")
        print(f"tide-relay --help: {len(opts)} options")

    print(f"check_man: {len(symbols)} symbols, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
