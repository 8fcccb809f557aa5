#!/usr/bin/python3
"""Extract seed 003's example plugins (the Sertone plugin document) into OUTDIR, one directory each.

    extract.py SEED_FILE OUTDIR

The seed is the plugin author's own documentation; the tests run its examples as published
rather than rewritten. Each example is cut out between two marker lines that must each occur
exactly once. The Node.js examples are written out byte for byte. The Python examples lost
their indentation when the document was flattened to text, so for them -- and only for them --
this script puts the indentation back: it tracks blocks (a line ending in ':' opens one;
`elif`/`else`/`except`/`finally` return to their opener; `def` returns to its class, `class`
and `if __name__` to the module) and uses a short table for the few lines where a block's end
cannot be inferred from the text. It then checks that every output line, stripped, is exactly
the seed's line, and that the result compiles.

The document must be exactly seed 003 (its SHA-256 is pinned below): the tests read
`../shared/seeds/003_*.txt` next to the checkout when it is there, else `seed-003.txt`, the
verbatim copy kept beside this script so a clone elsewhere (CI) runs the same bytes. A changed
document is refused until the extraction has been reviewed against it and the pin updated.
"""
import hashlib
import json
import py_compile
import sys
from pathlib import Path

SEED_SHA256 = "6b79df01441401a52c14073dda68addef9fd89b8873ab21495395ab396b345f9"

# name -> (file written, first line prefix, line that ends the example (excluded))
EXAMPLES = {
    "hello-node": ("server.js", "// sertone-plugin-hello — minimal Node.js plugin", "FROM node:22-alpine"),
    "ratelimiter-node": ("server.js", "// sertone-plugin-ratelimiter", "FROM node:22-alpine"),
    "hello-python": ("plugin.py", "# sertone-plugin-hello — minimal Python plugin", "FROM python:3.12-alpine"),
    "logger-python": ("plugin.py", "# sertone-plugin-logger", "FROM python:3.12-alpine"),
    "geofw-python": ("plugin.py", "# Geographic Firewall Plugin", "Security notes"),
}

# (example, stripped line, occurrence) -> indentation level, where the end of a block is not in
# the text: after `return False, ...` in is_allowed, the next `if` closes two blocks.
OVERRIDES = {
    ("geofw-python", "if ALLOWED_PREFIXES:", 1): 1,
    ("geofw-python", "return False, 'Consumer not in allowed region.'", 1): 2,
    ("geofw-python", "return True, ''", 2): 1,
}

CLAUSES = {"elif": {"if", "elif"}, "else": {"if", "elif", "for", "while", "try", "except"},
           "except": {"try", "except"}, "finally": {"try", "except", "else"}}
COMPOUND = {"if", "elif", "else", "try", "except", "finally", "for", "while", "with", "def", "class"}


def code_part(line):
    """The line without a trailing comment, and its net bracket depth (strings skipped)."""
    depth, quote, i = 0, None, 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#":
            return line[:i].rstrip(), depth
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return line.rstrip(), depth


def first_word(s):
    w = s.split(None, 1)[0] if s else ""
    return w.rstrip(":").split("(", 1)[0]


def reindent(name, lines):
    out, stack, depth, cont_level, seen = [], [], 0, 0, {}
    for raw in lines:
        s = raw.strip()
        if not s:
            out.append("")
            continue
        if depth > 0:  # inside brackets: any indentation deeper than the statement's
            out.append("    " * cont_level + s)
            depth += code_part(s)[1]
            continue
        code, d = code_part(s)
        kw = first_word(s)
        seen[s] = seen.get(s, 0) + 1
        body = next((lvl + 1 for (lvl, _, inline) in reversed(stack) if not inline), 0)
        if (name, s, seen[s]) in OVERRIDES:
            level = OVERRIDES[(name, s, seen[s])]
        elif kw in CLAUSES:
            while stack and stack[-1][1] not in CLAUSES[kw]:
                stack.pop()
            if not stack:
                sys.exit(f"{name}: `{s}` has no opener")
            level = stack.pop()[0]
        elif kw == "class" or s.startswith("if __name__"):
            level = 0
        elif kw == "def" or s.startswith("@"):
            classes = [lvl for (lvl, k, _) in stack if k == "class"]
            level = classes[-1] + 1 if classes else 0
        elif s.startswith("#"):
            level = body
        else:
            level = body
        while stack and stack[-1][0] >= level:
            stack.pop()
        out.append("    " * level + s)
        if kw in COMPOUND:
            stack.append((level, kw, not code.endswith(":")))
        depth, cont_level = d, level + 1
    return out


def main():
    seed, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    raw = seed.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SEED_SHA256:
        sys.exit(f"{seed}: SHA-256 {digest} is not seed 003's ({SEED_SHA256})")
    lines = raw.decode("utf-8").splitlines()
    written = {}
    for name, (fname, start, end) in EXAMPLES.items():
        starts = [i for i, l in enumerate(lines) if l.startswith(start)]
        if len(starts) != 1:
            sys.exit(f"{name}: the start marker occurs {len(starts)} times in {seed}")
        i = starts[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k].strip() == end), None)
        if j is None:
            sys.exit(f"{name}: no end marker `{end}` after line {i + 1}")
        block = lines[i:j]
        if fname.endswith(".py"):
            text = reindent(name, block)
            if [l.strip() for l in text] != [l.strip() for l in block]:
                sys.exit(f"{name}: re-indentation changed a line")
        else:
            text = block
        d = outdir / name
        d.mkdir(parents=True, exist_ok=True)
        (d / fname).write_text("\n".join(text) + "\n", encoding="utf-8")
        if fname.endswith(".py"):
            py_compile.compile(str(d / fname), cfile=str(outdir / f".{name}.pyc"), doraise=True)
        written[name] = {"file": str(d / fname), "seed_lines": [i + 1, j]}
    print(json.dumps(written, indent=1))


if __name__ == "__main__":
    main()
