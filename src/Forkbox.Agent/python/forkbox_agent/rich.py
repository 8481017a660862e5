"""Rich results: the MIME bundle of a cell's value (as Jupyter makes it from the _repr_*_ methods
and _repr_mimebundle_), and matplotlib figures as image/png.

A bundle maps a MIME type to its content: text for text types, base64 for binary ones (image/png,
image/jpeg, application/pdf), a JSON value for application/json. It is what a Jupyter kernel
sends as an execute_result's or display_data's "data", so a client that speaks another notebook
protocol (E2B's Result: text, html, png, svg, json, …) maps it key for key.

matplotlib is never imported here: a watch on sys.meta_path notices when a cell imports it, picks
the Agg backend (a sandbox has no display; $MPLBACKEND still wins) and makes pyplot.show() send
each open figure as a display event, as Jupyter's inline backend does. Figures still open when a
cell ends are sent the same way, and closed."""

import base64
import importlib.abc
import io
import json
import os
import sys

# Jupyter's formatters, in its order: (MIME type, method).
REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("application/pdf", "_repr_pdf_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)
BINARY = {"image/png", "image/jpeg", "application/pdf"}
# What one bundle may carry, all entries together and as encoded in the frame (JSON, UTF-8): a
# result or a display is one frame to hostd, whose header may not pass 16 MiB (a bigger one kills
# the sandbox). An entry that does not fit is dropped, with a note on stderr.
BUNDLE_LIMIT = 8 << 20
# An attribute no object has: one that answers it claims every name (a mock, a proxy), and its
# _repr_*_ "methods" are not methods (IPython checks the same way).
_CANARY = "_forkbox_canary_method_should_not_exist_"


def bundle(value, text, is_json):
    """The MIME bundle of value, whose repr is text: text/plain, then what its _repr_mimebundle_
    and _repr_*_ methods give (the bundle's entries first), or image/png for a matplotlib figure.
    A method that raises or gives something of the wrong type leaves its entry out and says why on
    stderr. is_json tells a JSON value, for application/json."""
    mime = {"text/plain": text}
    if isinstance(value, type) or _claims_everything(value):
        return mime
    sizes = {"text/plain": _encoded_size(text)}
    if is_figure(value):
        png = figure_png(value)
        if png is not None:
            _add(mime, sizes, "image/png", png, is_json)
        return mime
    entries = []  # (MIME type, content, whether it replaces an entry already there)
    method = _method(value, "_repr_mimebundle_")
    if method is not None:
        got = _call(value, "_repr_mimebundle_", lambda: method(include=None, exclude=None))
        if isinstance(got, tuple) and got:
            got = got[0]  # (data, metadata)
        if isinstance(got, dict):
            entries += ((k, v, True) for k, v in got.items())
        elif got is not None:
            _note(f"{type(value).__name__}._repr_mimebundle_() gave a {type(got).__name__}, not a dict; ignored")
    for key, name in REPR_METHODS:
        method = _method(value, name)
        if method is not None:
            got = _call(value, name, method)
            if isinstance(got, tuple) and got:
                got = got[0]
            if got is not None:
                entries.append((key, got, False))
    for key, content, replaces in entries:
        if replaces or key not in mime:
            _add(mime, sizes, key, content, is_json)
    return mime


def _encoded_size(content):
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _add(mime, sizes, key, content, is_json):
    """Puts content in mime[key] when it has the shape its type needs and fits; sizes keeps each
    entry's encoded size."""
    if not isinstance(key, str):
        return
    if key == "application/json" or key.endswith("+json"):
        if not is_json(content, 0):
            return _note(f"the result's {key} is not a JSON value; dropped")
    elif isinstance(content, (bytes, bytearray, memoryview)):
        content = bytes(content)
        content = base64.b64encode(content).decode("ascii") if key in BINARY else content.decode("utf-8", "replace")
    elif not isinstance(content, str):
        return _note(f"the result's {key} is a {type(content).__name__}, not text or bytes; dropped")
    size = _encoded_size(content)
    used = sum(sizes.values()) - sizes.get(key, 0)
    if used + size > BUNDLE_LIMIT:
        return _note(f"the result's {key} ({size} bytes) does not fit in the {BUNDLE_LIMIT >> 20} MiB a result may carry; dropped")
    mime[key] = content
    sizes[key] = size


def _method(value, name):
    if getattr(type(value), name, None) is None:
        return None
    try:
        method = getattr(value, name)
    except Exception:
        return None
    return method if callable(method) else None


def _claims_everything(value):
    try:
        return hasattr(value, _CANARY)
    except Exception:
        return True


def _call(value, name, method):
    try:
        return method()
    except Exception as e:  # user code: the result goes out without this entry
        _note(f"{type(value).__name__}.{name}() raised {type(e).__name__}: {e}")
        return None


def _note(message):
    sys.stderr.write(f"forkbox: {message}\n")


# ---- matplotlib -------------------------------------------------------------------------------

def is_figure(value):
    figure = sys.modules.get("matplotlib.figure")
    return figure is not None and isinstance(value, figure.Figure)


def figure_png(fig):
    """The figure as base64 PNG, cropped to what is drawn (as Jupyter's inline backend), or None
    when it cannot be drawn (why goes to stderr)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    except Exception as e:  # a figure user code broke
        _note(f"the figure could not be drawn: {type(e).__name__}: {e}")
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


class Figures:
    """Sends pyplot's open figures as display events during a rich call (display(mime) is the
    agent's), and sets matplotlib up for a sandbox when a cell imports it."""

    def __init__(self, display):
        self.display = display
        self.active = False  # a rich call is running: its figures are shown
        self.configured = set()  # the names of the modules set up, once each

    def install(self):
        """Watches imports from now on (and sets up what is imported already, say by a template's preload)."""
        sys.meta_path.insert(0, _ImportWatch({"matplotlib": self._setup_matplotlib,
                                              "matplotlib.pyplot": self._setup_pyplot}))

    def begin(self, rich):
        self.active = rich
        for name, setup in (("matplotlib", self._setup_matplotlib), ("matplotlib.pyplot", self._setup_pyplot)):
            if name not in self.configured and name in sys.modules:
                setup(sys.modules[name])

    def end(self):
        """At the end of a cell: what is still open is shown and closed, as in a notebook."""
        if self.active:
            self.show_all()
        self.active = False

    def shown_as_result(self, fig):
        """A figure that was the cell's value is in its result: closed, so the end does not send it again."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            try:
                pyplot.close(fig)
            except Exception:
                pass

    def show_all(self):
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        try:
            numbers = pyplot.get_fignums()
        except Exception:
            return
        for n in numbers:
            try:
                fig = pyplot.figure(n)
            except Exception:
                continue
            png = figure_png(fig)
            if png is not None and len(png) > BUNDLE_LIMIT:
                _note(f"figure {n} ({len(png)} bytes of PNG) does not fit in the {BUNDLE_LIMIT >> 20} MiB a display may carry; not sent")
            elif png is not None:
                self.display({"text/plain": _figure_text(fig), "image/png": png})
            try:
                pyplot.close(fig)
            except Exception:
                pass

    def _setup_matplotlib(self, matplotlib):
        self.configured.add("matplotlib")
        if not os.environ.get("MPLBACKEND"):
            try:
                matplotlib.rcParams["backend"] = "agg"  # no display in a sandbox; $MPLBACKEND still wins
            except Exception as e:
                _note(f"could not choose matplotlib's Agg backend: {type(e).__name__}: {e}")

    def _setup_pyplot(self, pyplot):
        self.configured.add("matplotlib.pyplot")
        original = pyplot.show
        figures = self

        def show(*args, **kwargs):
            """Sends the open figures to the caller as image/png (Forkbox; outside a rich call, matplotlib's own show)."""
            if not figures.active:
                return original(*args, **kwargs)
            figures.show_all()
            return None

        show.__wrapped__ = original
        pyplot.show = show


def _figure_text(fig):
    try:
        return repr(fig)
    except Exception:
        return "<Figure>"


class _ImportWatch(importlib.abc.MetaPathFinder):
    """Calls hooks[name](module) once the module named name has been imported. Costs nothing on
    imports of other names, and nothing on any import of a module already loaded (sys.modules
    answers those before sys.meta_path is asked)."""

    def __init__(self, hooks):
        self.hooks = hooks

    def find_spec(self, name, path, target=None):
        hook = self.hooks.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(spec.loader, hook)
        return spec


class _HookedLoader(importlib.abc.Loader):
    def __init__(self, loader, hook):
        self.loader = loader
        self.hook = hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        try:
            self.hook(module)
        except Exception as e:  # never fail the user's import for it
            _note(f"could not set up {module.__name__} for the sandbox: {type(e).__name__}: {e}")

    def __getattr__(self, name):  # get_resource_reader, is_package, … of the real loader
        return getattr(self.loader, name)
