#!/usr/bin/env python3
"""Import circles between a crate's top-level modules (tests included).

Usage: .ci/import-circles.py crates/*/src   (exit 1 when any crate has one)
The house rule (docs/ARCHITECTURE.md): modules of a crate import each other
in one direction only, so each can be read knowing only what is below it.

Each .rs file under <crate>/src maps to its top-level module: the first path
component under src/ (foo.rs and foo/ are one module; lib.rs/main.rs are the
crate root, named "<root>"). Edges: `crate::X` references anywhere in the file
(use lines, inline paths, grouped `use crate::{a, b::c}`), comments stripped.
Prints the strongly connected components of size > 1 and self-free edges.
"""
import os, re, sys
from collections import defaultdict

def strip_comments(src):
    src = re.sub(r'/\*.*?\*/', '', src, flags=re.S)
    return re.sub(r'//[^\n]*', '', src)

def module_of(rel):
    first = rel.split(os.sep)[0]
    if first in ('lib.rs', 'main.rs'):
        return '<root>'
    return first[:-3] if first.endswith('.rs') else first

def refs(src):
    out = set()
    for m in re.finditer(r'\bcrate\s*::\s*([A-Za-z_][A-Za-z0-9_]*|\{)', src):
        tok = m.group(1)
        if tok != '{':
            out.add(tok)
            continue
        # grouped: crate::{a, b::c, d::{e, f}} -> first component of each top-level item
        i, depth, start, items = m.end(), 1, m.end(), []
        while i < len(src) and depth:
            c = src[i]
            if c == '{': depth += 1
            elif c == '}':
                depth -= 1
                if depth == 0: items.append(src[start:i])
            elif c == ',' and depth == 1:
                items.append(src[start:i]); start = i + 1
            i += 1
        for it in items:
            w = re.match(r'\s*([A-Za-z_][A-Za-z0-9_]*)', it)
            if w and w.group(1) != 'self': out.add(w.group(1))
    return out

def scc(nodes, edges):
    index, low, stack, on, res, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            res.append(comp)
    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index: visit(v)
    return res

def check(src_dir):
    edges, why = defaultdict(set), defaultdict(set)
    mods = set()
    for root, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith('.rs'): continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src_dir)
            mod = module_of(rel); mods.add(mod)
            with open(path, encoding='utf-8') as fh:
                src = strip_comments(fh.read())
            for r in refs(src):
                mods.add(r)
                if r != mod:
                    edges[mod].add(r); why[(mod, r)].add(rel)
    circles = [sorted(c) for c in scc(mods, edges) if len(c) > 1]
    return mods, circles, why, edges

def main():
    total = 0
    for crate_src in sys.argv[1:]:
        mods, circles, why, edges = check(crate_src)
        status = 'no circle' if not circles else f'{len(circles)} circle(s)'
        print(f'{crate_src}: {len(mods)} modules, {status}')
        for c in circles:
            total += 1
            print('  circle:', ' <-> '.join(c))
            for a in c:
                for b in sorted(edges[a]):
                    if b in c:
                        print(f'    {a} -> {b}: {", ".join(sorted(why[(a, b)]))}')
    sys.exit(1 if total else 0)

if __name__ == '__main__':
    main()
