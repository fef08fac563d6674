#!/usr/bin/env python3
"""Prints the cycles in each crate's module graph, and between the folders of each crate, and
exits 1 when there is any.

A module is one source file (`a/mod.rs` or `a.rs` is `a`, `a/b.rs` is `a::b`). Module A
imports module B when A names a path that resolves into B: `use crate::b::X`, `super::X`,
a child's `child::f()`, or an inline `crate::b::f()`. Re-exports (`pub use b::X` in A) are
followed to the module that defines X, so importing a re-exported name does not count as
importing the module that re-exports it. Declaring a child (`mod b;` or `mod b { .. }`) is not an import; an inline module (such as
`mod tests { .. }`) is a module of its own.

Folders are checked as layers: among the children of one module (the files and folders side
by side in one directory), child A uses child B when any module in A imports any module in
B. Those uses must not loop either, so each folder of a crate sits on the ones it uses.

Usage: python3 .ci/module_cycles.py [CRATE_SRC_DIR ...]   (default: every crates/*/src and
bench/src; a crate's lib.rs and main.rs trees are checked apart)
"""

import re
import sys
from pathlib import Path

USE_RE = re.compile(r"\buse\s+([^;]+);")
MOD_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
INLINE_MOD_RE = re.compile(r"(?<![\w:])mod\s+(\w+)\s*\{")
INLINE_RE = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)")


def strip_comments_and_strings(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand_use_tree(tree):
    """`a::{b, c::{d as e}}` -> [['a','b'], ['a','c','d']] (aliases dropped, `self` folded)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, s):
        depth, parts, start = 0, [], 0
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            brace = part.find("{")
            if brace >= 0 and part.endswith("}"):
                head = [p for p in part[:brace].split("::") if p]
                walk(prefix + head, part[brace + 1 : -1])
            else:
                segs = prefix + [p for p in part.split("::") if p]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                out.append(segs)

    walk([], tree)
    return out


class Crate:
    def __init__(self, root):
        self.files = {}  # module path (tuple) -> text
        self._load((), Path(root))
        self.reexports = {m: self._reexports(m) for m in self.files}

    def _load(self, module, path):
        text = self._split_inline(module, strip_comments_and_strings(path.read_text()))
        self.files[module] = text
        base = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.with_suffix("")
        for child in MOD_RE.findall(text):
            for candidate in (base / f"{child}.rs", base / child / "mod.rs"):
                if candidate.exists():
                    self._load(module + (child,), candidate)
                    break

    def _split_inline(self, module, text):
        """Takes `mod name { ... }` blocks out of a file's text as modules of their own."""
        while (m := INLINE_MOD_RE.search(text)) is not None:
            depth, end = 0, len(text)
            for i in range(m.end() - 1, len(text)):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                if depth == 0:
                    end = i + 1
                    break
            child = module + (m.group(1),)
            self.files[child] = self._split_inline(child, text[m.end() : end - 1])
            text = text[: m.start()] + text[end:]
        return text

    def children(self, module):
        return {m[-1] for m in self.files if len(m) == len(module) + 1 and m[: len(module)] == module}

    def _reexports(self, module):
        names = {}
        for tree in re.findall(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", self.files[module]):
            for segs in expand_use_tree(tree):
                if segs:
                    names[segs[-1]] = segs
        return names

    def absolute(self, module, segs):
        """Turns a path as written in `module` into one from the crate root, or None."""
        if not segs:
            return None
        head, rest = segs[0], list(segs[1:])
        if head == "crate":
            base = ()
        elif head == "self":
            base = module
        elif head == "super":
            base = module[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif head in self.children(module):
            base, rest = module, list(segs)
        else:
            return None
        return base, rest

    def resolve(self, module, segs, seen=None):
        """The module a path written in `module` lands in (following re-exports)."""
        found = self.absolute(module, segs)
        if found is None:
            return None
        base, rest = found
        seen = seen or set()
        while rest and base + (rest[0],) in self.files:
            base, rest = base + (rest[0],), rest[1:]
        if rest and rest[0] in self.reexports.get(base, {}) and (base, rest[0]) not in seen:
            seen.add((base, rest[0]))
            target = self.resolve(base, self.reexports[base][rest[0]], seen)
            if target is not None:
                return target
        return base

    def edges(self):
        graph = {m: {} for m in self.files}
        for module, text in self.files.items():
            paths = []
            for tree in USE_RE.findall(text):
                paths.extend(expand_use_tree(tree))
            paths.extend(p.split("::") for p in INLINE_RE.findall(text))
            for child in self.children(module):
                paths.extend([child, m] for m in re.findall(rf"(?<![\w:]){child}::(\w+)", text))
            for segs in paths:
                target = self.resolve(module, segs)
                # A module reaching into its own descendants is the parent using a child.
                if target is not None and target != module:
                    graph[module].setdefault(target, "::".join(segs))
        return graph


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def folder_graphs(crate, graph):
    """For each module with children: its children, each with the siblings it uses and one
    import that shows it (`module -> target (path)`)."""
    out = {}
    for parent in {m[:-1] for m in crate.files if m}:
        depth = len(parent)
        uses = {child: {} for child in crate.children(parent)}
        for module, targets in graph.items():
            if len(module) <= depth or module[:depth] != parent:
                continue
            for target, why in targets.items():
                if len(target) > depth and target[:depth] == parent and target[depth] != module[depth]:
                    uses[module[depth]].setdefault(target[depth], (module, target, why))
        out[parent] = uses
    return out


def name(crate, module):
    return crate + ("::" + "::".join(module) if module else "")


def main(argv):
    root = Path(__file__).resolve().parent.parent
    srcs = argv or sorted(str(p) for p in root.glob("crates/*/src")) + [str(root / "bench/src")]
    # A crate's library and its binary are separate module trees.
    roots = [r for src in srcs for r in (Path(src) / "lib.rs", Path(src) / "main.rs") if r.exists()]
    failed = False
    for path in roots:
        crate = path.parent.parent.name.replace("-", "_") + ("" if path.name == "lib.rs" else " (bin)")
        c = Crate(path)
        graph = c.edges()
        for comp in sccs(graph):
            failed = True
            members = set(comp)
            print(f"cycle in {crate} ({len(comp)} modules):")
            for m in sorted(comp):
                inside = sorted((name(crate, t), why) for t, why in graph[m].items() if t in members)
                print(f"  {name(crate, m)} -> " + ", ".join(f"{t} ({why})" for t, why in inside))
        for parent, uses in sorted(folder_graphs(c, graph).items()):
            for comp in sccs(uses):
                failed = True
                members = set(comp)
                print(f"circle between the folders of {name(crate, parent)}: {', '.join(sorted(comp))}")
                for child in sorted(comp):
                    for other, (m, t, why) in sorted(uses[child].items()):
                        if other in members:
                            print(f"  {child} -> {other}: {name(crate, m)} -> {name(crate, t)} ({why})")
        print(f"{crate}: {len(graph)} modules, {sum(map(len, graph.values()))} imports", file=sys.stderr)
    if failed:
        print("module or folder cycles found: make the dependencies point one way", file=sys.stderr)
        return 1
    print("no module cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
