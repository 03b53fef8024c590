"""The dashboard's page: the server-rendered sections inside one self-contained HTML document
(inline CSS and script, nothing fetched but ``state.json``). The script polls ``state.json``
every refresh and replaces each section whose HTML changed; a failed poll marks the page stale
and keeps the last content."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from lorafeed.dashboard_html import SECTIONS, TITLES

_CSS = """
body{font:14px system-ui,sans-serif;margin:1.2em;color:#212121;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .4em}h2{font-size:1.1em;margin:1.2em 0 .4em}
h3{font-size:1em;margin:.8em 0 .3em}
table{border-collapse:collapse;margin:.3em 0;background:#fff}
th,td{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:middle}
th{background:#f0f0f0}.cards{display:flex;flex-wrap:wrap;gap:.6em}
.card{background:#fff;border:1px solid #e0e0e0;padding:.4em .8em;min-width:9em}
.card .k{color:#757575;font-size:.85em}.card .v{font-size:1.4em}
.ok,.sync{color:#2e7d32}.bad,.behind{color:#c62828}.na,.empty{color:#9e9e9e}
.champ{font-weight:bold}.pin{color:#ef6c00}#updated{color:#757575}
body[data-stale=true] #updated{color:#c62828;font-weight:bold}
"""

_SCRIPT = """
(function () {
  var every = %(refresh_ms)d, polls = 0;
  function show(text, stale) {
    document.getElementById('updated').textContent = text;
    document.body.setAttribute('data-stale', stale ? 'true' : 'false');
  }
  function poll() {
    fetch('state.json', {cache: 'no-store'}).then(function (r) {
      if (!r.ok) { throw new Error('HTTP ' + r.status); }
      return r.json();
    }).then(function (state) {
      Object.keys(state.html).forEach(function (id) {
        var el = document.getElementById(id);
        if (el && el.innerHTML !== state.html[id]) { el.innerHTML = state.html[id]; }
      });
      polls += 1;
      document.body.setAttribute('data-polls', String(polls));
      document.body.setAttribute('data-generated', state.generated_at);
      show('updated ' + state.generated_at, false);
    }).catch(function (err) {
      show('stale (' + err.message + '), retrying', true);
    }).then(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
"""


def render_page(sections: Mapping[str, str], generated_at: str, refresh_s: float) -> str:
    """The full document; ``sections`` from `dashboard_html.render_sections`."""
    blocks = []
    for name in SECTIONS:
        title = f"<h2>{escape(TITLES[name])}</h2>" if TITLES[name] else ""
        blocks.append(f'<section>{title}<div id="{name}">{sections.get(name, "")}</div></section>')
    script = _SCRIPT % {"refresh_ms": max(200, int(refresh_s * 1000))}
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>lorafeed dashboard</title>"
        f"<style>{_CSS}</style></head>"
        f'<body data-stale="false" data-polls="0" data-generated="{escape(generated_at)}">'
        '<h1>lorafeed <small id="updated">updated '
        f"{escape(generated_at)}</small></h1>{''.join(blocks)}"
        f"<script>'use strict';{script}</script></body></html>"
    )

