"""Second step of porting Punjab 0.15 (Python 2 only) to Python 3.

`start --install` first runs `python -m lib2to3 -w -n` over the unpacked
`punjab/` package; that handles the syntax (print, `except X, e`, `raise X, m`,
implicit relative imports, has_key, unicode, iteritems, dict views). What it
cannot know about, this script does: text versus bytes where Punjab meets
Twisted's web and XML APIs, and the Twisted APIs (22.x and later) that changed since
Punjab was written. Every edit must apply, or the install fails: a changed
source should stop the install, not run half-ported.

    python py3fixup.py PACKAGE_DIR
"""

import re
import sys
from pathlib import Path

# (file, old text, new text, why). Each `old` must occur at least once.
EDITS = [
    # jabber.py
    ("jabber.py",
     "from twisted.words import version",
     "from twisted import version",
     "twisted.words no longer has its own version; Twisted's is the same"),
    ("jabber.py",
     "self.streamHost.encode('utf-8'))",
     "self.streamHost)",
     "restart header: bytes in a %-format would send to=\"b'localhost'\""),
    ("jabber.py",
     "str(buf, 'utf-8').encode('ascii', 'replace')",
     "buf.decode('utf-8', 'replace')",
     "verbose traffic log: data off the wire is bytes"),
    # session.py
    ("session.py",
     '"".join("%02x" % ord(i) for i in os.urandom(20))',
     "os.urandom(20).hex()",
     "the session id: os.urandom gives ints, not 1-char strings"),
    ("session.py",
     "server.Session.__init__(self, pint, self.sid)",
     "server.Session.__init__(self, pint, self.sid, reactor)",
     "Twisted >= 22 takes the reactor from site.reactor unless given one"),
    ("session.py",
     "if type(buf) == type(''):",
     "if isinstance(buf, bytes):",
     "raw mode: received data is bytes, the buffer text"),
    # httpb.py
    ("httpb.py",
     '        return ""\n',
     '        return b""\n',
     "resource render methods return bytes"),
    ("httpb.py",
     'return """<html>',
     'return b"""<html>',
     "resource render methods return bytes"),
    ("httpb.py",
     "request.received_headers",
     "request.requestHeaders",
     "verbose request log: the old attribute is gone from Twisted"),
    ("httpb.py",
     "setHeader('content-length', len(bxml))",
     "setHeader('content-length', str(len(bxml)))",
     "header values are text or bytes, not int"),
    ("httpb.py",
     'setHeader("content-length", len(bxml))',
     'setHeader("content-length", str(len(bxml)))',
     "header values are text or bytes, not int"),
    ("httpb.py",
     "' -> ' + bxml)",
     "' -> ' + bxml.decode(charset))",
     "verbose error log: the serialized body is bytes"),
    ("httpb.py",
     "hashlib.sha1(body['key'])",
     "hashlib.sha1(body['key'].encode('utf-8'))",
     "XEP-0124 keys: sha1 hashes bytes"),
    # __init__.py (the twistd plugin's makeService; our run.py does not use it)
    ("__init__.py",
     "r.putChild('http-bind',",
     "r.putChild(b'http-bind',",
     "Twisted resource paths are bytes"),
    ("__init__.py",
     "r.putChild(config['httpb'],",
     "r.putChild(config['httpb'].encode('utf-8'),",
     "Twisted resource paths are bytes"),
]

# `defer.fail(error.NotFound)` hands Twisted an exception class; on Python 3
# building a Failure from a class raises AttributeError, so the BOSH error
# answer (404 for an unknown sid, say) became an exception of its own.
FAIL_WITH_CLASS = re.compile(r"defer\.fail\(error\.(\w+)\)")

IMPLEMENTS_LINE = re.compile(r"^(\s+)implements\((.*)\)\s*$")
CLASS_LINE = re.compile(r"^(\s*)class\s")
LEADING_WS = re.compile(r"^[ \t]+")


def expand_leading_tabs(text):
    """Python 2 read a tab as 'to the next multiple of 8'; 3 refuses mixing."""
    return "\n".join(LEADING_WS.sub(lambda m: m.group(0).expandtabs(8), line)
                     for line in text.split("\n"))


def class_advice_to_decorator(text):
    """zope.interface's `implements(I)` in a class body (Python 2 only) becomes
    `@implementer(I)` above that class (and `pass` where it stood)."""
    lines = text.split("\n")
    out = []
    for line in lines:
        m = IMPLEMENTS_LINE.match(line)
        if not m:
            out.append(line)
            continue
        # `pass` keeps a body that held nothing else a body.
        out.append(m.group(1) + "pass")
        indent = len(m.group(1))
        for i in range(len(out) - 1, -1, -1):
            c = CLASS_LINE.match(out[i])
            if c and len(c.group(1)) < indent:
                out.insert(i, "%s@implementer(%s)" % (c.group(1), m.group(2)))
                break
        else:
            raise SystemExit("py3fixup: no class above %r" % line)
    text = "\n".join(out)
    return re.sub(r"^(from zope\.interface import .*)\bimplements\b",
                  r"\1implementer", text, flags=re.M)


def main(pkg):
    pkg = Path(pkg)
    files = sorted(pkg.rglob("*.py"))
    if not (pkg / "httpb.py").exists():
        raise SystemExit("py3fixup: %s is not the punjab package" % pkg)
    for path in files:
        text = path.read_text(encoding="utf-8")
        new = expand_leading_tabs(text)
        new = class_advice_to_decorator(new)
        new = FAIL_WITH_CLASS.sub(r"defer.fail(error.\1())", new)
        for name, old, repl, why in EDITS:
            if path.relative_to(pkg).as_posix() != name:
                continue
            if old not in new:
                raise SystemExit("py3fixup: %s: %r not found (%s)" % (name, old, why))
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new, encoding="utf-8")
    # Every edit's file must exist.
    missing = {name for name, *_ in EDITS} - {p.relative_to(pkg).as_posix() for p in files}
    if missing:
        raise SystemExit("py3fixup: missing %s" % ", ".join(sorted(missing)))


if __name__ == "__main__":
    main(sys.argv[1])
