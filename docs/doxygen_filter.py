#!/usr/bin/env python3
"""Doxygen input filter: turns the headers' plain `//` contract comments into documentation.

The public headers document every declaration with ordinary `//` comments (the project's
style), which Doxygen ignores. This filter rewrites a header on the fly, leaving the file on
disk untouched:

- the comment block that opens the file becomes the file's documentation (`/// @file`);
- a comment block directly above a declaration (no blank line in between) becomes that
  declaration's documentation (`///`);
- a comment after code on the same line (a member, an enumerator) becomes `///<`;
- comments inside function bodies, and blocks followed by a blank line (section titles,
  notes about the code below), stay plain comments;
- `protected:` sections are shown to Doxygen as `private:`: in these headers they hold a base
  class's machinery for its derived class (Cursor for CursorMut), which is not API.

Comment text is escaped so that prose such as `Frame<M>`, `a | b`, `#3731` or
`Cursor<C>::find_next` is shown as written instead of being read as HTML, a table, a Doxygen
command or a link request; text between backticks is left alone (Markdown shows it as code).

Usage (Doxygen's INPUT_FILTER appends the file name): doxygen_filter.py FILE
"""

import re
import sys

# Characters Doxygen or its Markdown reader would interpret in prose.
_SPECIAL = re.compile(r'([\\@<>&#%$|])')
# `::name` after a non-identifier (e.g. after an escaped `>`) would be an explicit link request.
_SCOPE_OP = re.compile(r'(?<![A-Za-z0-9_])::')
_SCOPE_HEAD = re.compile(r'\b(class|struct|union|namespace|enum)\b|extern\s+"C"')


def escape_text(text: str) -> str:
    """Escapes `text` outside backtick code spans (all of it if the backticks do not pair)."""
    def esc(prose):
        return _SCOPE_OP.sub(r'\\::', _SPECIAL.sub(r'\\\1', prose))
    parts = text.split('`')
    if len(parts) % 2 == 0:
        return esc(text)
    for i in range(0, len(parts), 2):
        parts[i] = esc(parts[i])
    return '`'.join(parts)


def split_code_comment(line: str):
    """Returns (code, comment) where comment is the text after a `//` outside string and
    character literals, or None if the line has no such comment."""
    i, n = 0, len(line)
    quote = None
    while i < n:
        c = line[i]
        if quote:
            if c == '\\':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in '"\'':
            # A digit separator (1'000) is not a character literal.
            if c == "'" and i > 0 and line[i - 1].isalnum() and i + 1 < n and line[i + 1].isalnum():
                i += 1
                continue
            quote = c
        elif line.startswith('//', i):
            return line[:i], line[i + 2:]
        i += 1
    return line, None


def count_braces(code: str):
    """Opening and closing braces in `code` outside literals (comments already removed)."""
    opens = closes = 0
    quote = None
    i = 0
    while i < len(code):
        c = code[i]
        if quote:
            if c == '\\':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c == '"':
            quote = c
        elif c == '{':
            opens += 1
        elif c == '}':
            closes += 1
        i += 1
    return opens, closes


def is_comment_line(line: str) -> bool:
    return line.lstrip().startswith('//')


def comment_text(line: str) -> str:
    text = line.lstrip()[2:]
    return text[1:] if text.startswith(' ') else text


def documents_next(line: str) -> bool:
    """Whether a comment block directly above `line` describes a declaration there."""
    s = line.strip()
    if not s or s.startswith('}') or s.startswith('#') and not s.startswith('#define'):
        return False
    return s not in ('public:', 'private:', 'protected:')


def filter_lines(lines):
    out = []
    # Scope stack: True for a scope whose comments document declarations (namespace, class),
    # False for a body (function, lambda, initializer) whose comments stay plain.
    stack = []
    in_body = lambda: any(not s for s in stack)
    i, n = 0, len(lines)
    seen_code = False
    while i < n:
        line = lines[i]
        if is_comment_line(line) and not in_body():
            j = i
            while j < n and is_comment_line(lines[j]):
                j += 1
            block = lines[i:j]
            indent = line[:len(line) - len(line.lstrip())]
            if not seen_code:
                out.append('/// @file')
                out.extend(indent + '/// ' + escape_text(comment_text(b)) for b in block)
            elif j < n and documents_next(lines[j]):
                out.extend(indent + '/// ' + escape_text(comment_text(b)) for b in block)
            else:
                out.extend(block)
            seen_code = True
            i = j
            continue
        if line.strip() == 'protected:':
            line = line.replace('protected:', 'private:')
        code, comment = split_code_comment(line)
        if code.strip():
            seen_code = True
        if comment is not None and code.strip() and not in_body():
            line = code + '///< ' + escape_text(comment.strip())
        opens, closes = count_braces(code)
        if opens or closes:
            # Braces balanced on one line (`{}`, `x{0}`, `{ return v; }`) open nothing.
            net = opens - closes
            if net > 0:
                head = code + ' ' + ' '.join(lines[max(0, i - 3):i])
                # A class head may span lines: `class X<Y>` then `    : public Base<...> {`.
                continued = code.strip() == '{' or code.lstrip().startswith(':')
                scope = bool(_SCOPE_HEAD.search(code)) or (
                    continued and bool(_SCOPE_HEAD.search(head)))
                stack.extend([scope and not in_body()] * net)
            elif net < 0:
                del stack[len(stack) + net:]
        out.append(line)
        i += 1
    return out


def main() -> int:
    with open(sys.argv[1], encoding='utf-8') as f:
        lines = f.read().split('\n')
    sys.stdout.write('\n'.join(filter_lines(lines)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
