"""A reader's check: every page of the built book, opened in headless Chromium at 1280x900.

Fails, naming the page and the element, on:

* an element wider than the content column: a table, code or output block, image or display
  formula whose content is wider than its box (it scrolls or is clipped) or whose box reaches
  past the article's right edge;
* an image that did not load; a page whose formulas MathJax did not typeset;
* raw LaTeX (``$...$``, ``\\(``, ``\\frac``, ``\\begin``) or MyST role syntax (``{glue...}``,
  ``{cite...}``, ```{``) in the rendered text, i.e. math MathJax did not typeset or a role
  Sphinx did not resolve (code blocks excepted);
* an output showing an absolute path of the machine that built it (``/home/...``, ``/work/...``);
* error outputs: tracebacks, ``.output.error``/``.traceback`` blocks, stderr blocks saying
  "Error", and JavaScript errors on the page;
* any request to another host (the book must read offline; MathJax is served by the site).

Which book: ``PNEUMO_BOOK_HTML=_build/html`` (``make reader``, after ``make html``) checks a
built book and fails if it is not there; without it the test builds the book itself into a
temporary folder (about 15 s), so ``pytest tests`` never skips it silently. Without
``/usr/bin/chromium`` it is skipped, saying so, except under CI (``CI`` set), where it fails.
``PNEUMO_BOOK_SCREENSHOTS=DIR`` also saves a full-page screenshot of every page there.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _book_toc import ROOT, toc_files

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
PAGE_TIMEOUT_MS = 60_000

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"the book's reader check needs {CHROMIUM} (make browser installs it as root)")
    pytest.skip(f"the book's reader check needs Debian's chromium at {CHROMIUM} "
                "(`make test` installs it when run as root; or: apt-get install chromium)",
                allow_module_level=True)


#: Every page of _toc.yml as a path in the built HTML (book/intro.html, ...).
PAGES = [str(Path(name).with_suffix(".html")) for name in toc_files()]


@pytest.fixture(scope="module")
def book_html(tmp_path_factory) -> Path:
    given = os.environ.get("PNEUMO_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(f"PNEUMO_BOOK_HTML={given}: no built book there (run `make html` first)")
        return html
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900)
    html = out / "_build" / "html"
    if proc.returncode or not (html / "index.html").is_file():
        pytest.fail(f"jupyter-book build failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return html


@pytest.fixture(scope="module")
def site(book_html):
    """The built book on a loopback HTTP server (fonts and scripts load as on a real site)."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


# Runs in the page after MathJax has typeset it; returns one line per problem found.
CHECK_PAGE = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const problems = [];
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const right = article.getBoundingClientRect().right;
  const visible = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const where = el => {
    let name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      [...el.classList].slice(0, 3).map(c => '.' + c).join('');
    const section = el.closest('section[id]');
    const text = (el.innerText || el.textContent || el.getAttribute('src') || el.getAttribute('alt') || '').trim().replace(/\s+/g, ' ');
    const folded = el.closest('details:not([open])') ? ' [folded until the reader opens it]' : '';
    return `${name} in section #${section ? section.id : '?'}${folded} ("${text.slice(0, 70)}")`;
  };
  const wide = 'table, pre, div.highlight, div.output, div.cell_output, .output_area, img, mjx-container[display="true"], div.math';
  const reported = new Set();
  for (const el of article.querySelectorAll(wide)) {
    if (!visible(el)) continue;
    const box = el.getBoundingClientRect();
    let why = null;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      why = `content ${el.scrollWidth} px wide in a ${el.clientWidth} px box (scrolls or is clipped)`;
    } else if (box.right > right + 1) {
      why = `reaches ${Math.round(box.right - right)} px past the content column`;
    }
    if (why && ![...reported].some(r => r.contains(el))) {
      reported.add(el);
      problems.push(`${where(el)}: ${why}`);
    }
  }
  const formulas = article.querySelectorAll('span.math, div.math');
  if (formulas.length && !article.querySelector('mjx-container')) {
    problems.push(`${formulas.length} formula(s) and none typeset: MathJax did not load (${window.MathJax ? 'configured' : 'absent'})`);
  }
  for (const img of document.querySelectorAll('article img, main img')) {
    if (!img.complete || img.naturalWidth === 0) problems.push(`${where(img)}: image did not load`);
  }
  // Visible prose text (no code, no typeset math, nothing hidden).
  const skip = 'pre, code, script, style, mjx-container, .highlight, kbd, samp, textarea';
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const raw = [
    [/\$[^$\n]{1,200}\$/, 'raw $...$ math'], [/\\\(|\\\[/, 'untypeset \\( or \\[ math'],
    [/\\(frac|begin|end|sum|mathrm|mathbf|left|right|cdot)\b/, 'raw LaTeX command'],
    [/\{(glue|cite|doc|ref|numref|eq|math|term|download)[:}]/, 'unresolved MyST role'], [/`\{/, 'raw MyST role syntax'],
  ];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip) || !visible(parent)) continue;
    for (const [pattern, what] of raw) {
      const m = node.textContent.match(pattern);
      if (m) problems.push(`${where(parent)}: ${what} visible: "${m[0].slice(0, 60)}"`);
    }
  }
  for (const el of article.querySelectorAll('.output.error, .output.traceback, .traceback, div.stderr, .output.stderr')) {
    const text = el.innerText || el.textContent || '';
    if (el.matches('.error, .traceback') || /Error|Traceback/.test(text)) problems.push(`${where(el)}: error output`);
  }
  for (const el of article.querySelectorAll('pre')) {
    if (/Traceback \(most recent call last\)/.test(el.textContent)) problems.push(`${where(el)}: a traceback is shown`);
  }
  const machinePath = /(?:^|[\s'"(=:])((?:\/(?:home|work|root|Users|tmp|mnt|private|var\/folders)\/|[A-Z]:\\Users\\)[^\s'")]*)/m;
  for (const el of article.querySelectorAll('.cell_output')) {
    const m = (el.textContent || '').match(machinePath);
    if (m) problems.push(`${where(el)}: shows a path of the machine that built the book: "${m[1].slice(0, 80)}"`);
  }
  return problems;
}
"""


@pytest.mark.parametrize("page_path", PAGES)
def test_page_reads_well(browser, site, book_html, page_path):
    assert (book_html / page_path).is_file(), f"{page_path}: not in the built book"
    page = browser.new_page(viewport=VIEWPORT)
    outside, js_errors = [], []
    host = urlsplit(site).netloc

    def route(r):
        if urlsplit(r.request.url).netloc in (host, "") or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda err: js_errors.append(str(err)))
    try:
        page.goto(site + page_path, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        problems = page.evaluate(CHECK_PAGE)
        shots = os.environ.get("PNEUMO_BOOK_SCREENSHOTS")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / (page_path.replace("/", "_") + ".png")), full_page=True)
    finally:
        page.close()
    problems += [f"request to another host (the book must read offline): {url}" for url in dict.fromkeys(outside)]
    problems += [f"JavaScript error: {err}" for err in js_errors]
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)
