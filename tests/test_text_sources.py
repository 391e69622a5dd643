"""The large text corpus's readers (one per source format), prose filter, de-duplication and Rotten Tomatoes
exclusion, on small synthetic files in each source's real format. The corpus itself is not built here."""

import gzip
import json

import pytest

from data2vec.data import prepare_text as pt
from data2vec.data import text_corpus as tc
from data2vec.errors import Data2VecError


def test_prose_filter_keeps_sentences_drops_code_tables_and_other_languages():
    assert tc.is_prose("The server reads its configuration file once at start-up.")
    assert tc.is_prose("If an object defines __set__ or __delete__, it is considered a data descriptor.")
    assert not tc.is_prose("x = foo(bar[1]) + {a: b}; return x;")
    assert not tc.is_prose("Library options")  # heading
    assert not tc.is_prose("the continuation of a sentence cut by a code block.")
    assert not tc.is_prose("Um número crescente de plataformas implementa IPv6 e o APR suporta IPv6.")
    assert not tc.is_prose("| 1 | 2 | 3 | 4 | 5 | 6 |.")
    assert tc.prose_sentences("* The first item is prose. See https://example.org/x for more. X=1;y=2;") == [
        "The first item is prose."]


def test_html_reader_keeps_blocks_drops_scripts_pre_and_navigation():
    page = """<html><head><title>T</title><style>p {color: red}</style></head><body>
    <nav><a href="/">Home</a> of the site is here.</nav>
    <h1>Chapter 1</h1><p>The first paragraph has <code>inline code</code> and an &amp; entity.</p>
    <pre>for (i = 0; i &lt; n; i++) { x++; }</pre><script>var a = 1;</script>
    <ul><li>An item that is a whole sentence.</li><li>Another one, also a sentence.</li></ul></body></html>"""
    paras = tc.html_paragraphs(page)
    assert "The first paragraph has inline code and an & entity." in paras
    assert "An item that is a whole sentence." in paras and "Another one, also a sentence." in paras
    assert not any("for (i" in p or "var a" in p or "color" in p or "Home" in p for p in paras)


def test_rst_reader_drops_directives_literal_blocks_tables_and_markup():
    rst = """Title
=====

.. note::

   A note body that belongs to the directive.

Use :func:`os.path.join` and ``len(x)`` with `the docs <https://x.org>`_ here. Example::

    for x in y:
        print(x)

+-----+-----+
| a b | c d |
+-----+-----+

* A bullet that is a sentence.
* A second bullet
  that wraps onto two lines.

The **last** paragraph, *emphasised*.
"""
    paras = tc.rst_paragraphs(rst)
    assert paras[0] == "Use os.path.join and len(x) with the docs here. Example:"
    assert "A bullet that is a sentence." in paras and "A second bullet that wraps onto two lines." in paras
    assert paras[-1] == "The last paragraph, emphasised."
    assert not any("print" in p or "note body" in p or "Title" in p or "| a b" in p for p in paras)


def test_pod_asciidoc_and_info_readers():
    pod = "=head1 NAME\n\nperlfoo - a test\n\n=head2 Usage\n\nCall C<foo()> with L<the manual|perlfunc> and " \
          "B<bold> E<gt> text.\n\n    my $x = 1;\n\n=begin html\n\n<p>skip</p>\n\n=end html\n\n=cut\n"
    assert tc.pod_paragraphs(pod) == ["perlfoo - a test", "Call foo() with the manual and bold > text."]
    adoc = "git-foo(1)\n==========\n\nNAME\n----\ngit-foo - Do a thing\n\n[verse]\n'git foo' [--bar]\n\n" \
           "DESCRIPTION\n-----------\nThis command reads `HEAD` and, see linkgit:git-log[1], writes 'refs'.\n\n" \
           "------------\n$ git foo --bar\n------------\n\n--bar::\n\tMakes the command print more.\n"
    paras = tc.asciidoc_paragraphs(adoc)
    assert "This command reads HEAD and, see git-log, writes refs." in paras
    assert "Makes the command print more." in paras
    assert not any("$ git" in p for p in paras)
    info = "File: standards.info,  Node: Top\n\n\x1f\nFile: standards.info, Node: Intro\n\n1 About\n*******\n\n" \
           "This document tells you how to write\nportable programs.  *Note Other::.\n\n     int main (void);\n\n" \
           "* Menu:\n\n* Intro::\n"
    assert tc.info_paragraphs(info) == ["1 About", "This document tells you how to write portable programs. Other."]


def test_gcide_wordnet_and_sword_readers():
    gcide = ("Coagulate \\Co*ag\"u*late\\, a. [L. coagulatus, p. p.\n   of coagulare. See {Cogent}.]\n"
             "   Coagulated in form. [Obs.] --Shak.\n   [1913 Webster]\n\n"
             "Coagulate \\Co*ag\"u*late\\, v. t.\n   To cause (a liquid) to change into a curdlike state; as, rennet "
             "coagulates milk.\n   [1913 Webster]\n\n   2. (Chem.) The substance formed by coagulation.\n"
             "      [1913 Webster]\n\n   Syn: To thicken; curdle.\n\n          Quoted verse here.\n          --Pope.\n")
    assert list(tc.gcide_definitions(gcide)) == [
        ["Coagulated in form."],
        ["To cause (a liquid) to change into a curdlike state; as, rennet coagulates milk.",
         "The substance formed by coagulation."]]
    wn = "  1 This software and database is provided\n00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which " \
         "is perceived to have its own distinct existence; \"the entity was seen\"; \"it ran\"  \n"
    assert tc.wordnet_glosses(wn) == ["That which is perceived to have its own distinct existence.",
                                      "The entity was seen.", "It ran."]
    imp = ("$$$Genesis 1:1\n<w lemma=\"strong:H0430\">In</w> the beginning, God<note placement=\"foot\">A note."
           "</note> created the heavens.\n$$$Genesis 1:2\n\n$$$Psalms 1:0\n<title>TITLE.</title><div sID=\"a\" "
           "type=\"x-p\"/>First paragraph.<div eID=\"a\" type=\"x-p\"/> <hi>Second</hi> one &amp; more.\n")
    assert list(tc.sword_entries(imp)) == [("Genesis 1:1", ["In the beginning, God created the heavens."]),
                                           ("Psalms 1:0", ["First paragraph.", "Second one & more."])]


def test_deduper_exact_normalised_and_excluded():
    d = tc.Deduper(exclude=["A truly great film. The cast is superb in every scene."])
    doc = ["The cat sat on the mat today.", "the cat sat on the MAT, today!", "The cast is superb in every scene.",
           "A truly great film. The cast is superb in every scene.", "A new sentence here."]
    assert d.filter(doc) == ["The cat sat on the mat today.", "A new sentence here."]
    assert d.stats == {"duplicate": 1, "excluded": 2}
    assert d.filter(["The cat sat on the mat today."]) == []


@pytest.fixture
def tiny_sources(tmp_path, monkeypatch):
    root = tmp_path / "html"
    root.mkdir()
    body = "".join(f"<p>Page {i} says that sentence number {j} is about the topic of page {i}.</p>"
                   for i in range(30) for j in range(3))
    (root / "a.html").write_text(f"<html><body>{body}<p>This review is a brilliant and moving film.</p>"
                                 "<p>Shared boilerplate sentence on every page.</p></body></html>")
    (root / "b.html.gz").write_bytes(gzip.compress(b"<p>Shared boilerplate sentence on every page.</p>"
                                                   b"<p>The second page has its own words, which are new.</p>"))
    src = tc.Source("tiny", "tiny-doc", "MIT", str(root), ("*.html", "*.html.gz"), tc.html_paragraphs)
    gone = tc.Source("gone", "gone-doc", "MIT", str(tmp_path / "nope"), ("*.html",), tc.html_paragraphs)
    monkeypatch.setattr(tc, "SOURCES", {"tiny": src, "gone": gone})
    rt = {"train": [{"text": "A train review that may stay.", "category": "fresh", "movie_name": "m"}],
          "dev": [], "test": [{"text": "This review is a brilliant and moving film.", "category": "fresh",
                               "movie_name": "n"}], "plot": []}
    rt["all"] = rt["train"] + rt["test"]
    monkeypatch.setattr(pt, "rt_reviews_by_split", lambda seed=0: rt)
    return tmp_path


def test_prepare_text_sources_dedups_excludes_reviews_and_reports_sizes(tiny_sources, capsys):
    info = pt.prepare_text(tiny_sources / "out", sources=["tiny"], vocab_size=300, valid_fraction=0.3)
    st = info["sources"]["tiny"]
    assert info["rt_review_sentences_dropped"] == 1 and st["excluded"] == 1 and st["duplicate"] == 1
    assert st["documents"] == 2 and st["sentences"] == 90 + 2 and st["package"] == "tiny-doc"
    assert st["tokens"] == info["train_tokens"] + info["valid_tokens"]
    text = (tiny_sources / "out" / "train.txt").read_text() + (tiny_sources / "out" / "valid.txt").read_text()
    assert "brilliant" not in text and text.count("Shared boilerplate") == 1
    assert json.loads((tiny_sources / "out" / "corpus.json").read_text())["request"]["sources"] == ["tiny"]
    assert "tiny: 2 documents" in capsys.readouterr().out


def test_missing_source_is_one_line_naming_package_and_command(tiny_sources):
    with pytest.raises(Data2VecError, match=r"gone are not installed: run `make data` \(or `apt-get install gone-doc"):
        pt.prepare_text(tiny_sources / "out2", sources=["tiny", "gone"])
    with pytest.raises(Data2VecError, match="unknown text sources"):
        pt.prepare_text(tiny_sources / "out3", sources=["nope"])


def test_small_corpus_keeps_only_train_split_reviews(monkeypatch):
    rt = {"train": [{"text": "Train review one is kept here.", "category": "fresh", "movie_name": "m"}],
          "plot": [{"text": "A plot of a train movie.", "category": "plot", "movie_name": "m"}],
          "dev": [{"text": "Dev review must go.", "category": "rotten", "movie_name": "d"}],
          "test": [{"text": "Test review must go.", "category": "fresh", "movie_name": "t"}]}
    monkeypatch.setattr(pt, "english_sentences", lambda **kw: ["A fortune sentence is here."])
    docs = pt.builtin_documents(0, rt)
    flat = [s for d in docs for s in d]
    assert "Train review one is kept here." in flat and "A plot of a train movie." in flat
    assert not any("must go" in s for s in flat)
