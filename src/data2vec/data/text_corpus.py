"""The large built-in English corpus: prose from Debian documentation and dictionary packages.

    data2vec prepare text --out data/text-large --corpus large      # about 20 M BPE tokens
    make data                                                      # installs the packages below first

Each source is one Debian package, read from where it installs, by a small reader for its format
(HTML, reStructuredText, POD, AsciiDoc, Info, GCIDE's and WordNet's dictionary text, SWORD modules).
Every paragraph goes through
the same prose filter (``prose_sentences``): markup is stripped, the paragraph is split into sentences,
and only sentences that look like English prose are kept (mostly letters, a capital first, ``.!?``
last, few code symbols, most words lower-case alphabetic). A file (or a section of one) is a document.

``Deduper`` then drops repeated sentences across all sources (exact, and after normalisation: lower
case, letters and digits only), and any sentence that is, or is part of, a Rotten Tomatoes review
(the fine-tuning task's reviews, whatever their split), so no review text reaches pretraining.

Sources, their packages and licences (``SOURCES``; ``corpus.json`` records the per-source sizes; the
numbers of ``docs/results.md`` "Text corpus for pretraining"):
- ``fortunes``, ``gcide-quotes``: the small corpus (``text_sources``): fortune cookies (``fortunes``),
  GCIDE literary quotations and usage notes (``dict-gcide``, GPL-3+).
- ``gcide-defs``: GCIDE definitions (``dict-gcide``, GPL-3+), one definition = one sentence.
- ``linux-doc``: Linux kernel documentation, ``Documentation/**/*.rst.gz`` without ``translations/``,
  ``ABI/`` and device-tree bindings (``linux-doc-6.1``, GPL-2).
- ``python-doc``: the Python 3.11 manuals' reST sources (``python3.11-doc``, PSF-2.0).
- ``perl-doc``: Perl's POD manuals (``perl-doc``, GPL-1+ or Artistic).
- ``postgresql-doc``: the PostgreSQL 15 manual, HTML (``postgresql-doc-15``, PostgreSQL licence).
- ``sqlite-doc``: the SQLite documentation, HTML (``sqlite3-doc``, public domain).
- ``django-doc``: the Django 3.2 documentation, HTML (``python-django-doc``, BSD-3-Clause).
- ``apache-doc``: the Apache HTTP Server 2.4 manual, English HTML (``apache2-doc``, Apache-2.0).
- ``git-doc``: Git's manuals, AsciiDoc sources (``git-doc``, GPL-2).
- ``debian-handbook``: The Debian Administrator's Handbook, en-US HTML (``debian-handbook``,
  GPL-2+ or CC-BY-SA-3.0).
- ``debian-reference``: the Debian Reference, HTML (``debian-reference-en``, GPL-2+).
- ``gnu-standards``: GNU Coding Standards and Information for Maintainers, Info (``gnu-standards``,
  GFDL-1.3+).
- ``anarchism``: An Anarchist FAQ, HTML (``anarchism``, GPL-2): long-form argumentative prose.
- ``wordnet``: WordNet 3.0 glosses and example sentences (``wordnet-base``, WordNet licence).
- ``treasury-of-david``, ``mhcc``, ``scofield``: Spurgeon's Treasury of David (1885), Matthew Henry's
  Concise Commentary, the Scofield Reference Notes (1917) (``sword-comm-*``, public domain).
- ``bible-web``, ``bible-kjv``: World English Bible, King James Version (``sword-text-*``, public domain).
  SWORD modules are exported with ``mod2imp`` (``libsword-utils``) and their OSIS markup stripped.
No text leaves the machine: the corpus is built locally from the installed packages and not redistributed.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterable, Iterator

from data2vec.data.text_sources import english_sentences, split_sentences

# --------------------------------------------------------------------------------------------- prose filter

_CODE_CHARS = re.compile(r"[{}<>=\\|#@$\[\]~^`*/]")
_BULLET = re.compile(r"^(?:[*\u2022+-]|#\.|\(?[a-z0-9]\)|\d+\.)\s+(?=\S)")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_FUNCTION_WORDS = frozenset("the an of to and in is are be it that for with on as by this or not you he we they "
                            "his her was were will can if from have has which who there their".split())
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+")


def is_prose(s: str, min_words: int = 5, max_words: int = 80) -> bool:
    """A sentence that reads as English prose, not code, a table row, a path list or a heading."""
    words = s.split()
    if not min_words <= len(words) <= max_words:
        return False
    if not (s[0].isupper() or (s[0] in "\"'(" and len(s) > 1 and s[1].isupper())):
        return False
    if s.rstrip("\"')")[-1:] not in (".", "!", "?", ":"):
        return False
    if len(_CODE_CHARS.findall(s)) > max(1, len(s) // 50):
        return False
    letters = sum(c.isalpha() or c == " " for c in s)
    if letters < 0.85 * len(s):
        return False
    lower = [w.strip(".,;:!?\"'()").lower() for w in words]
    if not any(w in _FUNCTION_WORDS for w in lower):
        return False  # not English (translated pages)
    plain = sum(1 for w in words if _WORD.fullmatch(w.strip(".,;:!?\"'()")) and w[:1].islower())
    return plain >= 0.6 * len(words)


def prose_sentences(paragraph: str, min_words: int = 5, max_words: int = 80) -> list[str]:
    """The prose sentences of one paragraph of plain text (markup already stripped)."""
    text = _BULLET.sub("", _URL.sub("", " ".join(paragraph.split())))
    if not text:
        return []
    return [s for s in split_sentences(text) if is_prose(s, min_words, max_words)]


# --------------------------------------------------------------------------------------------- readers
# Each reader turns the text of one file into its paragraphs of plain text.

class _HTMLText(HTMLParser):
    BLOCK = {"p", "li", "dd", "dt", "div", "td", "th", "tr", "table", "ul", "ol", "dl", "blockquote", "br",
             "section", "article", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "body", "figure", "caption"}
    SKIP = {"script", "style", "pre", "head", "title", "nav", "header", "footer", "svg", "math", "noscript",
            "textarea", "select", "button", "form"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buf: list[str] = []
        self._skip = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._buf).split())
        if text:
            self.paragraphs.append(text)
        self._buf = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self._flush()

    def handle_startendtag(self, tag, attrs):
        if tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if not self._skip:
            self._buf.append(data)


def html_paragraphs(text: str) -> list[str]:
    """Text of the block elements of an HTML page; scripts, styles, ``<pre>`` and navigation dropped."""
    p = _HTMLText()
    p.feed(text)
    p.close()
    p._flush()
    return p.paragraphs


_RST_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)\s*(?:<[^`>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*(?:<[^`>]*>)?`__?")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def _rst_inline(s: str) -> str:
    s = _RST_ROLE.sub(r"\1", s)
    s = s.replace("``", "")
    s = _RST_LINK.sub(r"\1", s)
    s = re.sub(r"(?<![\w*])\*\*?([^*\s][^*]*?)\*\*?(?![\w*])", r"\1", s)
    s = re.sub(r"\|([\w -]+)\|", r"\1", s)
    s = re.sub(r"\[(?:#|\d+|\*)\w*\]_", "", s)  # footnote references
    return s


def _bullet_items(lines: list[str]) -> list[str]:
    """A list paragraph's items, each joined into one line (continuation lines are indented)."""
    items: list[list[str]] = []
    for ln in lines:
        if _BULLET.match(ln.strip()) or not items:
            items.append([_BULLET.sub("", ln.strip())])
        else:
            items[-1].append(ln.strip())
    return [" ".join(it) for it in items]


def rst_paragraphs(text: str) -> list[str]:
    """Paragraphs of a reStructuredText file: directives, comments, literal blocks (after ``::``),
    tables and section underlines dropped, inline roles and links reduced to their text."""
    out: list[str] = []
    skip_indent = None  # drop the indented block that follows a directive or a ``::``
    for para in re.split(r"\n[ \t]*\n", text.replace("\r", "")):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if not lines:
            continue
        indent = len(lines[0]) - len(lines[0].lstrip())
        if skip_indent is not None:
            if indent > skip_indent:
                continue
            skip_indent = None
        first = lines[0].strip()
        if first.startswith(".."):
            skip_indent = indent
            continue
        if any(ln.lstrip()[:1] in ("+", "|") or re.match(r"\s*={2,}(\s+=+)*\s*$", ln) for ln in lines):
            continue  # tables, line blocks
        lines = [ln for ln in lines if not _RST_UNDERLINE.match(ln.strip())]
        if not lines:
            continue
        joined = " ".join(ln.strip() for ln in lines)
        if joined.endswith("::"):
            skip_indent = indent
            joined = joined[:-2].rstrip() + ("" if joined.endswith(" ::") else ":")
        items = _bullet_items(lines) if _BULLET.match(lines[0].strip()) else [joined]
        out += [_rst_inline(it) for it in items]
    return out


_POD_CODE = re.compile(r"[A-Z]<([^<>]*)>")
_POD_CODE_MULTI = re.compile(r"[A-Z]<<+\s+(.*?)\s+>>+")


def _pod_inline(s: str) -> str:
    s = _POD_CODE_MULTI.sub(r"\1", s)
    for _ in range(4):  # nested codes, innermost first
        s = re.sub(r"E<(gt|lt|verbar|sol)>", lambda m: {"gt": ">", "lt": "<", "verbar": "|", "sol": "/"}[m.group(1)], s)
        s = re.sub(r"[XZ]<[^<>]*>", "", s)
        s = re.sub(r"L<([^<>|]*)\|[^<>]*>", r"\1", s)
        s = _POD_CODE.sub(r"\1", s)
    return s


def pod_paragraphs(text: str) -> list[str]:
    """Ordinary paragraphs of a POD file: commands (``=head1``, ``=item``...), verbatim (indented)
    paragraphs and ``=begin``/``=for`` blocks dropped, formatting codes reduced to their text."""
    out: list[str] = []
    in_begin = False
    for para in re.split(r"\n[ \t]*\n", text.replace("\r", "")):
        if not para.strip():
            continue
        if para.startswith("="):
            cmd = para.split(None, 1)[0]
            if cmd == "=begin":
                in_begin = True
            elif cmd == "=end":
                in_begin = False
            continue
        if in_begin or para[:1] in (" ", "\t"):
            continue
        out.append(_pod_inline(" ".join(para.split())))
    return out


_ADOC_DELIM = re.compile(r"^(-{4,}|\.{4,}|={4,}|\*{4,}|_{4,}|\+{4,}|/{4,}|\|={3,})\s*$")


def asciidoc_paragraphs(text: str) -> list[str]:
    """Paragraphs of an AsciiDoc file (Git's manuals): delimited and literal (indented) blocks,
    attributes, titles, comments and includes dropped; ``linkgit:x[1]``, ``link:u[t]`` reduced to text."""
    out: list[str] = []
    delim = None
    cur: list[str] = []

    def flush():
        if cur:
            joined = " ".join(ln.strip() for ln in cur)
            joined = re.sub(r"linkgit:([\w-]+)\[\d\]", r"\1", joined)
            joined = re.sub(r"\b(?:link|https?|mailto):\S*?\[([^\]]*)\]", r"\1", joined)
            joined = re.sub(r"`([^`]*)`", r"\1", joined)
            joined = re.sub(r"(?<!\w)'([^'\s][^']*?)'(?!\w)", r"\1", joined)
            joined = re.sub(r"(?<!\w)[*_]([^*_\s][^*_]*?)[*_](?!\w)", r"\1", joined)
            out.append(joined)
            cur.clear()

    for ln in text.replace("\r", "").split("\n"):
        s = ln.strip()
        if delim is not None:
            if s == delim:
                delim = None
            continue
        if cur and re.match(r"^[-=~^+]{2,}$", s):
            cur.clear()  # the line before was a title (underlined)
            continue
        if _ADOC_DELIM.match(s):
            flush()
            delim = s
            continue
        if not s:
            flush()
            continue
        if s.startswith(("//", "include::", "ifdef::", "endif::", "ifndef::")) \
                or re.match(r"^:[\w-]+:", s) or re.match(r"^\[.*\]$", s) or re.match(r"^[=#]+ ", s) \
                or re.match(r"^\.[A-Za-z]", s) or re.match(r"^[-=~^+]{3,}$", s) or s.endswith("::"):
            if re.match(r"^[-=~^+]{3,}$", s):
                cur.clear()  # the line before was a title
            else:
                flush()
            continue
        cur.append(ln)
    flush()
    return out


def info_paragraphs(text: str) -> list[str]:
    """Paragraphs of a GNU Info file: node headers, menus, and indented examples dropped."""
    out: list[str] = []
    for para in re.split(r"\n[ \t]*\n", text.replace("\r", "")):
        lines = [ln for ln in para.split("\n") if ln.strip() and "\x1f" not in ln and not ln.startswith("File: ")]
        lines = [ln for ln in lines if not re.fullmatch(r"\s*[=*\-.]{3,}\s*", ln)]
        if not lines or lines[0].startswith(("* Menu:", "* ")) or all(ln.startswith("     ") for ln in lines):
            continue
        para = re.sub(r"\*[Nn]ote ([^:]*)::", r"\1", " ".join(ln.strip() for ln in lines))
        out.append(" ".join(re.sub(r"'([^'\s][^']*?)'", r"\1", para).split()))
    return out


def _gcide_clean(b: str) -> str:
    b = re.sub(r"\[[^\]]*\]", "", b)
    b = re.sub(r"--\s*[A-Z][^.;]*\.?", "", b)  # --Shak., --Boyle.
    b = re.sub(r"^\s*\d+\.\s*", "", b)
    b = re.sub(r"^\s*(\([A-Z][^)]*\)\s*)+", "", b)  # (Zool.) domain labels
    b = re.sub(r"<[^<>\n]*>|[{}]|\\[^\\\n]*\\", "", b)
    b = " ".join(b.split())
    return b[:1].upper() + b[1:]


def gcide_definitions(text: str) -> Iterator[list[str]]:
    """GCIDE (``gcide.dict.dz`` text) definitions, one headword's definitions per list: the indented
    blocks that are not etymologies, synonyms, notes or quotations, with ``[1913 Webster]``-style marks,
    ``--Author`` citations, braces and ``\\pro*nun*ci*a"tion\\`` marks removed."""
    entry: list[str] = []
    for block in text.split("\n\n"):
        if block[:1].isalpha():  # a headword line, its etymology, maybe the first definition
            if entry:
                yield entry
            entry, depth, body = [], 0, []
            lines = block.split("\n")
            for i, ln in enumerate(lines):
                if i and depth == 0 and ln.startswith("   "):
                    body = lines[i:]
                    break
                depth += ln.count("[") - ln.count("]")
            block = "\n".join(body)
        elif not block.startswith("   ") or block.startswith(" " * 6):
            continue  # quotations, continuation of synonym lists, the file's header
        b = block.strip()
        if not b or b.startswith(("Syn:", "Note:", "Usage:", "[", "See ", "Also ")):
            continue
        b = _gcide_clean(b)
        if b:
            entry.append(b)
    if entry:
        yield entry


def sword_entries(text: str | Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """``(key, paragraphs)`` of a SWORD module exported by ``mod2imp MODULE`` (``$$$Genesis 1:1``
    lines, then the entry's OSIS/ThML markup): footnotes and titles dropped, paragraph and line-break
    elements split paragraphs, other tags removed."""
    key, body = None, []
    lines = text.split("\n") if isinstance(text, str) else (ln.rstrip("\n") for ln in text)
    for line in [*lines, "$$$"] if isinstance(text, str) else _chain(lines, ["$$$"]):
        if line.startswith("$$$"):
            if key is not None and "".join(body).strip():
                raw = " ".join(body)
                raw = re.sub(r"<note\b.*?</note>|<title\b.*?</title>|<head\b.*?</head>", " ", raw, flags=re.S)
                raw = re.sub(r"<(?:div|p|lb|br)\b[^>]*>|</(?:div|p)>", "\n\n", raw)
                raw = re.sub(r"<[^>]*>", "", raw)
                raw = raw.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                paras = [" ".join(p.split()) for p in raw.split("\n\n")]
                yield key, [p for p in paras if p]
            key, body = line[3:].strip(), []
        else:
            body.append(line)


def _chain(*its):
    for it in its:
        yield from it


def wordnet_glosses(text: str) -> list[str]:
    """Sentences of a WordNet ``data.*`` file: each gloss's definition (capitalised, full stop added)
    and its quoted examples."""
    out = []
    for line in text.split("\n"):
        if line.startswith("  ") or " | " not in line:
            continue
        parts = [p.strip() for p in line.split(" | ", 1)[1].split(";")]
        for part in parts:
            if part.startswith('"'):
                ex = part.strip('"').strip()
                if ex:
                    out.append(ex[0].upper() + ex[1:] + ("" if ex[-1] in ".!?" else "."))
            elif part and part is parts[0]:
                out.append(part[0].upper() + part[1:] + ".")
    return out


# --------------------------------------------------------------------------------------------- sources

def _read(path: Path) -> str:
    if path.suffix == ".gz" or path.name.endswith(".dict.dz"):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            return f.read()
    return path.read_text(encoding="utf-8", errors="replace")


@dataclass(frozen=True)
class Source:
    """One Debian package's prose: where its files are, how to read them, its licence."""
    name: str
    package: str
    licence: str
    root: str
    patterns: tuple[str, ...]
    reader: Callable[[str], list[str]]
    exclude: tuple[str, ...] = ()
    description: str = ""

    def files(self, root: Path | None = None) -> list[Path]:
        base = Path(root or self.root)
        found = {p for pat in self.patterns for p in base.glob(pat) if p.is_file()}
        return sorted(p for p in found if not any(x in p.relative_to(base).as_posix() for x in self.exclude))

    def available(self, root: Path | None = None) -> bool:
        return Path(root or self.root).is_dir() and bool(self.files(root))

    def documents(self, root: Path | None = None, max_sentences: int = 200) -> Iterator[list[str]]:
        """Documents (lists of prose sentences), one per file, cut into pieces of ``max_sentences``."""
        if self.reader is _gcide_reader:
            yield from _gcide_documents(self.files(root))
            return
        if self.reader is _sword_reader:
            yield from _sword_documents(self.files(root), max_sentences)
            return
        if self.reader is wordnet_glosses:
            for path in self.files(root):
                sents = [g for g in wordnet_glosses(_read(path)) if is_prose(g, min_words=4)]
                for i in range(0, len(sents), 50):
                    yield sents[i:i + 50]
            return
        if self.reader is _builtin_reader:
            yield from _builtin_documents(self.name)
            return
        for path in self.files(root):
            sents = [s for para in self.reader(_read(path)) for s in prose_sentences(para)]
            for i in range(0, len(sents), max_sentences):
                yield sents[i:i + max_sentences]


def _gcide_reader(text: str) -> list[str]:  # marker: GCIDE is read entry by entry, see _gcide_documents
    raise NotImplementedError


def _gcide_documents(files: list[Path], entries_per_doc: int = 20) -> Iterator[list[str]]:
    """Definitions that pass the prose filter (min 4 words), ``entries_per_doc`` headwords a document."""
    for path in files:
        doc: list[str] = []
        n = 0
        for entry in gcide_definitions(_read(path)):
            doc += [d for d in entry if is_prose(d, min_words=4)]
            n += 1
            if n == entries_per_doc:
                if doc:
                    yield doc
                doc, n = [], 0
        if doc:
            yield doc


def _sword_reader(text: str) -> list[str]:  # marker: SWORD modules are read through mod2imp
    raise NotImplementedError


def _sword_documents(confs: list[Path], max_sentences: int) -> Iterator[list[str]]:
    """Each module named by a ``mods.d/*.conf`` exported with ``mod2imp`` (from ``libsword-utils``); a
    document per chapter (Bibles) or per entry (commentaries); entries repeated for linked verses once."""
    import subprocess

    for conf in confs:
        module = re.search(r"^\[(.+)\]", conf.read_text(errors="replace"), re.M).group(1)
        proc = subprocess.Popen(["mod2imp", module], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, errors="replace")
        seen: set[bytes] = set()  # commentaries repeat an entry for each verse it covers
        chapter, doc = None, []
        for key, paras in sword_entries(proc.stdout):
            paras = [p for p in paras if _h(p) not in seen]
            seen.update(_h(p) for p in paras)
            ch = key.rsplit(":", 1)[0]
            if ch != chapter or len(doc) >= max_sentences:
                if doc:
                    yield doc
                chapter, doc = ch, []
            # Bible verses are not sentences: a chapter's verses are joined before splitting
            doc += [s for p in paras for s in prose_sentences(p, min_words=4, max_words=120)]
        proc.wait()
        if doc:
            yield doc


def _builtin_reader(text: str) -> list[str]:  # marker: fortunes / GCIDE quotations from text_sources
    raise NotImplementedError


def _builtin_documents(name: str) -> Iterator[list[str]]:
    sents = english_sentences(min_words=3, max_words=60, sources=(name.split("-")[0],))
    for i in range(0, len(sents), 8):
        yield sents[i:i + 8]


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("fortunes", "fortunes", "public domain / various (fortune-mod)", "/usr/share/games/fortunes",
           ("*",), _builtin_reader, description="fortune cookies (the small corpus)"),
    Source("gcide-quotes", "dict-gcide", "GPL-3+", "/usr/share/dictd", ("gcide.dict.dz",), _builtin_reader,
           description="GCIDE literary quotations and usage notes (the small corpus)"),
    Source("gcide-defs", "dict-gcide", "GPL-3+", "/usr/share/dictd", ("gcide.dict.dz",), _gcide_reader,
           description="GCIDE dictionary definitions (Webster 1913 + additions)"),
    Source("linux-doc", "linux-doc-6.1", "GPL-2", "/usr/share/doc/linux-doc-6.1/Documentation",
           ("**/*.rst.gz", "**/*.rst"), rst_paragraphs, exclude=("translations/", "ABI/", "devicetree/bindings/"),
           description="Linux 6.1 kernel documentation (reST)"),
    Source("python-doc", "python3.11-doc", "PSF-2.0", "/usr/share/doc/python3.11/html/_sources",
           ("**/*.rst.txt",), rst_paragraphs, description="Python 3.11 manuals (reST sources)"),
    Source("perl-doc", "perl-doc", "GPL-1+ or Artistic", "/usr/share/perl",
           ("*/pod/*.pod", "*/pod/*.pod.gz"), pod_paragraphs, description="Perl 5.36 manuals (POD)"),
    Source("postgresql-doc", "postgresql-doc-15", "PostgreSQL", "/usr/share/doc/postgresql-doc-15/html",
           ("*.html",), html_paragraphs, description="PostgreSQL 15 manual (HTML)"),
    Source("sqlite-doc", "sqlite3-doc", "public domain", "/usr/share/doc/sqlite3",
           ("**/*.html",), html_paragraphs, description="SQLite documentation (HTML)"),
    Source("django-doc", "python-django-doc", "BSD-3-Clause", "/usr/share/doc/python-django-doc/html",
           ("**/*.html",), html_paragraphs, exclude=("_modules/", "genindex", "py-modindex", "search.html"),
           description="Django 3.2 documentation (HTML)"),
    Source("apache-doc", "apache2-doc", "Apache-2.0", "/usr/share/doc/apache2-doc/manual/en",
           ("**/*.html",), html_paragraphs, description="Apache HTTP Server 2.4 manual (English HTML)"),
    Source("git-doc", "git-doc", "GPL-2", "/usr/share/doc/git-doc",
           ("**/*.txt",), asciidoc_paragraphs, exclude=("RelNotes/",),
           description="Git manuals (AsciiDoc sources)"),
    Source("debian-handbook", "debian-handbook", "GPL-2+ or CC-BY-SA-3.0", "/usr/share/doc/debian-handbook/html/en-US",
           ("*.html",), html_paragraphs, description="The Debian Administrator's Handbook (en-US HTML)"),
    Source("debian-reference", "debian-reference-en", "GPL-2+", "/usr/share/debian-reference",
           ("*.en.html", "*.html"), html_paragraphs, description="Debian Reference (English HTML)"),
    Source("gnu-standards", "gnu-standards", "GFDL-1.3+", "/usr/share/info",
           ("standards.info.gz", "maintain.info.gz"), info_paragraphs,
           description="GNU Coding Standards, Information for Maintainers (Info)"),
    Source("anarchism", "anarchism", "GPL-2", "/usr/share/doc/anarchism/html", ("*.html",), html_paragraphs,
           description="An Anarchist FAQ, version 15 (HTML)"),
    Source("wordnet", "wordnet-base", "WordNet-3.0 (permissive)", "/usr/share/wordnet",
           ("data.noun", "data.verb", "data.adj", "data.adv"), wordnet_glosses,
           description="WordNet 3.0 glosses and example sentences"),
    Source("treasury-of-david", "sword-comm-tdavid", "public domain", "/usr/share/sword/mods.d",
           ("tdavid.conf",), _sword_reader, description="C. H. Spurgeon, The Treasury of David (1885)"),
    Source("mhcc", "sword-comm-mhcc", "public domain", "/usr/share/sword/mods.d",
           ("mhcc.conf",), _sword_reader, description="Matthew Henry's Concise Commentary"),
    Source("scofield", "sword-comm-scofield", "public domain", "/usr/share/sword/mods.d",
           ("scofield.conf",), _sword_reader, description="Scofield Reference Notes (1917)"),
    Source("bible-web", "sword-text-web", "public domain", "/usr/share/sword/mods.d",
           ("engWEB*.conf",), _sword_reader, description="World English Bible"),
    Source("bible-kjv", "sword-text-kjv", "public domain", "/usr/share/sword/mods.d",
           ("engKJV*.conf",), _sword_reader, description="King James Version"),
)}
LARGE = tuple(SOURCES)


def missing_sources(names: Iterable[str]) -> list[Source]:
    return [SOURCES[n] for n in names if not SOURCES[n].available()]


# --------------------------------------------------------------------------------------------- dedup

def normalise(text: str) -> str:
    """Lower case, letters and digits only, single spaces (the RT task's normalisation)."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _h(s: str) -> bytes:
    return hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest()


class Deduper:
    """Keeps each sentence once (exact text, then normalised text) and drops the excluded ones.

    ``exclude`` are texts (e.g. every Rotten Tomatoes review) that must not appear: a sentence is
    dropped when its normalised form equals a whole excluded text or one of its sentences.
    """

    def __init__(self, exclude: Iterable[str] = ()) -> None:
        self.seen: set[bytes] = set()
        self.excluded: set[bytes] = set()
        for t in exclude:
            for piece in [t, *split_sentences(t)]:
                key = normalise(piece)
                if key:
                    self.excluded.add(_h(key))
        self.stats = {"duplicate": 0, "excluded": 0}

    def filter(self, doc: list[str]) -> list[str]:
        out = []
        for s in doc:
            key = _h(normalise(s))
            if key in self.excluded:
                self.stats["excluded"] += 1
            elif key in self.seen:
                self.stats["duplicate"] += 1
            else:
                self.seen.add(key)
                out.append(s)
        return out
