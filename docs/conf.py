"""Sphinx configuration of jaxuq's documentation site (``make docs``).

Tutorials are MyST markdown notebooks that myst-nb executes at build time on the
CPU, cached under ``docs/_build/.jupyter_cache``; the API reference is generated
from each public module's ``__all__`` (``_ext/jaxuq_api.py``). No page fetches
anything from the network at build time.
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]
# Notebooks run on the CPU whatever the machine has; their kernels inherit this.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("PYTHONPATH", str(DOCS.parent))

import jaxuq_api  # noqa: E402

import jaxuq  # noqa: E402

jaxuq_api.write_api_pages(DOCS)

project = "jaxuq"
author = "the jaxuq authors"
copyright = "2026, the jaxuq authors"  # noqa: A001
release = jaxuq.__version__

extensions = [
  "myst_nb",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "jaxuq_api",
  "spread_notebooks",
]
templates_path = ["_templates"]
# The guide's toctree includes ``guide/*`` so that new guide pages appear once they
# are added; an empty match (no extra page yet) is not an error for these globs.
jaxuq_optional_globs = ["guide/*"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# Cross-references: every reference to one of jaxuq's own names must resolve.
# Third-party names (jax.Array, flax's modules, numpy) have no inventory offline
# (CI has no internet, so no intersphinx): they are rendered as plain text. Every
# other unresolved name, a short one included, fails the build.
nitpicky = True
nitpick_ignore_regex = [
  (
    r"py:.*",
    r"(jax|jaxlib|jnp|np|numpy|flax|nn|nnx|optax|matplotlib|PIL|os|pathlib|typing|collections|enum|abc)\..*",
  )
]
# Private marker types that public signatures mention; their role is described
# where they appear (``TrainState``'s fields).
nitpick_ignore = [
  ("py:class", "jaxuq._src.static.Static"),
  # Type aliases of the signatures (``Any`` or JAX's own at run time), and
  # Sphinx's wrapper of an alias it renders as written.
  ("py:class", "ArrayLike"),
  ("py:class", "PyTree"),
  ("py:class", "DTypeLike"),
  ("py:class", "TypeAliasForwardRef"),
]

# API pages: Google-style docstrings, signatures with short type names.
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"exclude-members": "__weakref__, __init__"}
python_use_unqualified_type_names = True
# Type aliases spelled as in the source (they are ``Any`` at run time).
# (Not PyTree nor DTypeLike: inside ``Callable[..., PyTree]`` or ``DTypeLike | None``
# Sphinx 9 prints its wrapper, ``TypeAliasForwardRef('PyTree')``.)
autodoc_type_aliases = {"ArrayLike": "ArrayLike"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Notebooks: executed once, then taken from the cache until their code changes.
nb_execution_mode = os.environ.get("JAXUQ_DOCS_EXECUTE", "cache")
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
# Without execution (the link test) a notebook whose front matter names no
# language has no lexer: not an error there.
suppress_warnings = ["myst-nb.lexer"] if nb_execution_mode == "off" else []
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# stderr of the tutorials (tqdm's note that ipywidgets is absent) is not shown;
# an exception still fails the build.
nb_output_stderr = "remove"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = f"jaxuq {release}"
html_theme_options = {
  "show_toc_level": 2,
  "home_page_in_toc": True,
  "navigation_with_keys": False,
  "navbar_persistent": [],
  # An API page documents one name: no "Contents" column beside it.
  "secondary_sidebar_items": {
    "*": ["page-toc"],
    "guide/*": ["page-toc"],
    "experiments/*": ["page-toc"],
    "benchmarks": [],  # its tables need the width
  },
}
html_static_path = ["_static"]
html_css_files = ["jaxuq.css"]
html_last_updated_fmt = None

# Sphinx 9 prints a type alias inside a union or subscript (``ArrayLike | None``) as its
# wrapper ``TypeAliasForwardRef('ArrayLike')``: show the alias's name instead.
_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('([^']+)'\)")


def _plain_aliases(app, what, name, obj, options, signature, return_annotation):
  def fix(text):
    return None if text is None else _FORWARD_REF.sub(r"\1", text)

  return fix(signature), fix(return_annotation)


def setup(app):
  app.connect("autodoc-process-signature", _plain_aliases)
