"""Build the lecture report: run every section's example, then write one self-contained HTML page.

Each section shows its text, the numbers it computed, its figures (PNG files beside index.html)
and the source of the example's functions (``run`` and its helpers): the code that produced them.
"""
import html
import inspect
import os
import time

from backprop import random
from backprop.lecture import examples
from backprop.plot.figure import pyplot

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 10px; }
td.value { font-family: monospace; text-align: right; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.85em; }
nav li { margin: 0.2em 0; } .meta { color: #666; font-size: 0.9em; }
"""


def load_sections():
    """The example modules, in lecture order."""
    modules = []
    for name in examples.SECTIONS:
        module = __import__(f"backprop.lecture.examples.{name}", fromlist=["run"])
        modules.append(module)
    return modules


def run_section(module, out, seed):
    random.set_seed(seed)
    start = time.perf_counter()
    result = module.run(out)
    pyplot().close("all")
    figures = result.pop("figures", [])
    return {"title": module.TITLE, "text": module.TEXT, "numbers": result, "figures": figures,
            "code": _example_code(module), "seconds": time.perf_counter() - start,
            "script": module.__name__.rsplit(".", 1)[1] + ".py"}


def _example_code(module):
    """The example's functions (``run`` and whatever it calls there), without the module's header and footer."""
    source = inspect.getsource(module)
    starts = [source.index(word) + 1 for word in ("\ndef ", "\nclass ") if word in source]
    start = min(starts) if starts else 0  # from the first class or function: a hand-written layer too
    end = source.find('\nif __name__ == "__main__":')
    return source[start:end if end != -1 else None].rstrip() + "\n"


def format_number(value):
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3e}"
    return html.escape(str(value))


def render(sections, seed, seconds):
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>backprop: the lecture</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>Introduction to deep learning, reproduced with backprop</h1>",
             f"<p class='meta'>Built by <code>backprop lecture</code> with seed {seed} in {seconds:.1f} s. "
             "Every number and figure below was computed by the code shown beside it.</p><nav><ol>"]
    parts += [f"<li><a href='#s{i}'>{html.escape(s['title'])}</a></li>" for i, s in enumerate(sections, 1)]
    parts.append("</ol></nav>")
    for i, section in enumerate(sections, 1):
        parts.append(f"<h2 id='s{i}'>{i}. {html.escape(section['title'])}</h2><p>{html.escape(section['text'])}</p>")
        for figure in section["figures"]:
            parts.append(f"<img src='{html.escape(figure)}' alt='{html.escape(section['title'])}'>")
        if section["numbers"]:
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td class='value'>{format_number(v)}</td></tr>"
                           for k, v in section["numbers"].items())
            parts.append(f"<table><tr><th>quantity</th><th>value</th></tr>{rows}</table>")
        parts.append(f"<p class='meta'>examples/{section['script']} ({section['seconds']:.1f} s):</p>"
                     f"<pre><code>{html.escape(section['code'])}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(out="lecture", seed=0, sections=None):
    """Run every section into ``out`` and write ``out/index.html``; returns its path."""
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    modules = load_sections() if sections is None else sections
    results = [run_section(module, out, seed) for module in modules]
    path = os.path.join(out, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(results, seed, time.perf_counter() - start))
    return os.path.abspath(path)
