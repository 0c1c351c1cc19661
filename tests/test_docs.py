"""The documentation site: every public name has an API page, and no link is broken.

The site is built once (``sphinx -W``, the tutorials not executed:
``JAXUQ_DOCS_EXECUTE=off``) into a temporary folder; ``make docs`` builds it with
the tutorials run. With ``JAXUQ_DOCS_SITE=docs/_build/html`` (as CI sets it,
right after ``make docs``) the tests check that site instead of building one. Needs the ``docs`` extra (``make docs`` installs it); without
Sphinx the tests are skipped, and the skip says so.
"""

import html.parser
import os
import subprocess
import sys
import urllib.parse
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import jaxuq_api  # noqa: E402
import spread_notebooks  # noqa: E402

pytestmark = pytest.mark.slow

# The modules the API reference must list at least (more appear as they are added).
KNOWN = {"jaxuq", "jaxuq.data", "jaxuq.exact", "jaxuq.metrics", "jaxuq.models", "jaxuq.plot"}
KNOWN |= {"jaxuq.reject", "jaxuq.train"}


def build_site(out: Path) -> Path:
  env = os.environ | {"JAXUQ_DOCS_EXECUTE": "off", "PYTHONPATH": str(ROOT)}
  cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q"]
  cmd += ["-d", str(out / ".doctrees"), str(DOCS), str(out / "html")]
  result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return out / "html"


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
  """objects.inv: name -> (domain:role, uri), per Sphinx's version-2 format."""
  data = path.read_bytes()
  body = data.split(b"\n", 4)[4]
  found = {}
  for line in zlib.decompress(body).decode().splitlines():
    name, role, _priority, uri, _display = line.split(" ", 4)
    found[name] = (role, uri.replace("$", name))
  return found


def test_public_modules_are_found():
  assert KNOWN <= set(jaxuq_api.public_modules())


def check_every_public_name_has_a_page(site):
  inventory = read_inventory(site / "objects.inv")
  missing = []
  for module in jaxuq_api.public_modules():
    if module not in inventory:
      missing.append(module)
    objects, submodules = jaxuq_api.public_names(module)
    for name in objects + submodules:
      full = f"{module}.{name}"
      if full not in inventory:
        missing.append(full)
        continue
      page = inventory[full][1].split("#")[0]
      assert (site / page).is_file(), f"{full}: {page} was not written"
  assert not missing, f"no API entry for {missing}"


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.ids, self.links = set(), []

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    if a.get("id"):
      self.ids.add(a["id"])
    if tag == "a" and a.get("name"):
      self.ids.add(a["name"])
    for attr in ("href", "src"):
      if tag in ("a", "img", "link", "script") and a.get(attr):
        self.links.append(a[attr])


def check_no_page_links_to_a_missing_target(site):
  # _static holds the theme's template fragments, not pages.
  pages = {p: _Links() for p in site.rglob("*.html") if "_static" not in p.parts}
  for path, parser in pages.items():
    parser.feed(path.read_text(encoding="utf-8"))
  broken = []
  for path, parser in pages.items():
    for link in parser.links:
      url = urllib.parse.urlsplit(link)
      if url.scheme or url.netloc or link.startswith(("mailto:", "javascript:")):
        continue  # external: not checked (no network), and the site has none of its own
      target = (path.parent / urllib.parse.unquote(url.path)).resolve() if url.path else path
      if target.is_dir():
        target = target / "index.html"
      if not target.exists():
        broken.append(f"{path.relative_to(site)} -> {link}")
      elif url.fragment and target.suffix == ".html":
        ids = pages[target].ids if target in pages else set()
        if url.fragment not in ids:
          broken.append(f"{path.relative_to(site)} -> {link} (no such anchor)")
  assert not broken, "\n".join(broken[:50])
  assert len(pages) > 50  # every API page was looked at


def check_signatures_show_no_sphinx_internals(site):
  # autodoc_type_aliases inside a subscript renders as TypeAliasForwardRef('X') in Sphinx 9.
  shown = [p.name for p in site.rglob("*.html") if "TypeAliasForwardRef" in p.read_text()]
  assert not shown


def test_the_built_site(tmp_path):
  # One test, so that the site is built once even when the tests run on several workers.
  pytest.importorskip("sphinx", reason="the docs extra is not installed (make docs installs it)")
  pytest.importorskip("myst_nb", reason="the docs extra is not installed (make docs installs it)")
  built = os.environ.get("JAXUQ_DOCS_SITE")
  if built:
    site = Path(built).resolve()
    assert (site / "objects.inv").is_file(), f"JAXUQ_DOCS_SITE={built} holds no built site"
  else:
    site = build_site(tmp_path)
  check_every_public_name_has_a_page(site)
  check_no_page_links_to_a_missing_target(site)
  check_signatures_show_no_sphinx_internals(site)


def test_pages_that_run_code_are_spread_over_the_reading_chunks():
  names = [f"api/{i:03d}" for i in range(12)] + ["guide/a", "guide/b", "guide/c"]
  out = spread_notebooks.spread(names, {"guide/a", "guide/b", "guide/c"})
  assert sorted(out) == sorted(names)
  assert [out.index(n) for n in ("guide/a", "guide/b", "guide/c")] == [0, 5, 10]
  assert [n for n in out if n.startswith("api")] == names[:12]  # the others keep their order
  assert spread_notebooks.spread(names[:3], set()) == names[:3]
  assert spread_notebooks.runs_code(DOCS / "guide" / "sampling.md")
  assert not spread_notebooks.runs_code(DOCS / "changelog.md")
