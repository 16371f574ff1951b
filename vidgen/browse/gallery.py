"""`DIR/index.html`: one self-contained page of every output under DIR, to compare them by eye.

Nothing on the page comes from the network: styles and script are inline, and videos, sidecars
and poster frames are linked relative to the page (posters are small JPEGs in
`DIR/index.posters/`, see posters.py). Everything a sidecar says is text from a file: it is
HTML-escaped and cut to a readable length, and the page runs no code from it. Outputs of one
`matrix:` sweep are laid out as a grid whose rows and columns are the swept fields, so variants
sit side by side.

The page scales to thousands of tiles: each is about a kilobyte of HTML, and a video gets its
source and poster only when its tile comes near the screen (`preload="none"` until then, then
`metadata`), so a browser never opens thousands of players at once.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vidgen.browse.catalog import Entry
from vidgen.core.terminal import shorten

PAGE = "index.html"


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


def _url(path: Path, root: Path) -> str:
    return quote(path.relative_to(root).as_posix())


# Outputs a browser shows as images (a <video> cannot play them).
IMAGES = (".gif", ".webp")
# How much of a prompt a tile shows, sorts by and the filter searches (the sidecar has it all).
PROMPT_CHARS = 300
SORT_CHARS = 200
SEARCH_CHARS = 1000


def _gib(count: object) -> str:
    return f"{count / 1024**3:.2f} GiB" if isinstance(count, (int, float)) else "?"


def _tile(entry: Entry, root: Path, posters: dict[Path, str]) -> str:
    row = entry.row()
    sampling = entry.section("sampling")
    timings = " ".join(
        f"{name} {seconds:.1f}s" for name, seconds in row["timings"].items() if isinstance(seconds, (int, float))
    )
    settings = [
        f"{row['frames']} frames {row['width']}x{row['height']} @ {row['fps']} fps",
        f"steps {sampling.get('num_inference_steps')} guidance {sampling.get('guidance_scale')}",
    ]
    prompt = str(row["prompt"] or "")
    enhanced = str(row["enhanced_prompt"] or "")
    # The files it was made from (IMAGE, --control, --reference ...), by name.
    inputs = " · ".join(f"{flag.lower()} {', '.join(names)}" for flag, names in row["inputs"].items())
    search = " ".join(
        str(v)
        for v in (
            shorten(prompt, SEARCH_CHARS),
            shorten(enhanced, SEARCH_CHARS),
            row["model"],
            row["mode"],
            entry.path.name,
            f"seed {row['seed']}",
            inputs,
        )
    )
    poster = posters.get(entry.path)
    if entry.path.suffix.lower() in IMAGES and entry.path.is_file():
        # An animated image plays by itself; only the ones near the screen are loaded.
        video = f'<img src="{_url(entry.path, root)}" loading="lazy" alt="">'
    elif entry.path.is_file():
        # Source and poster are set by the page's script when the tile nears the screen.
        video = (
            f'<video data-src="{_url(entry.path, root)}" muted loop playsinline preload="none"'
            + (f' data-poster="{_h(poster)}"' if poster else "")
            + "></video>"
        )
    else:
        video = f'<img src="{_h(poster)}" loading="lazy" alt="">' if poster else '<div class="frame"></div>'
    return (
        f'<figure class="tile" data-search="{_h(search.lower())}" '
        f'data-prompt="{_h(shorten(prompt, SORT_CHARS, count=False).lower())}" '
        f'data-seed="{_h(row["seed"])}" data-time="{_h(row["created_at"] or "")}">'
        f"{video}<figcaption>"
        f'<p class="prompt">{_h(shorten(prompt, PROMPT_CHARS) or entry.path.name)}</p>'
        # The prompt --enhance-prompt wrote, which the pipeline got, under the typed one.
        + (f'<p class="enhanced">enhanced: {_h(shorten(enhanced, PROMPT_CHARS))}</p>' if enhanced else "")
        + (f'<p class="inputs">{_h(inputs)}</p>' if inputs else "")
        + f"<p>seed {_h(row['seed'])} · {_h(row['model'])} · {_h(row['mode'])}</p>"
        f"<p>{_h(settings[0])}</p><p>{_h(settings[1])}</p>"
        # The finishing chain (--interpolate, --upscale) that made the file from the generation.
        + (f"<p>finished: {_h(row['finish'])}</p>" if row.get("finish") else "")
        + f"<p>{_h(timings)} · peak {_h(_gib(row['peak_memory_bytes']))}</p>"
        f'<p><a href="{_url(entry.path, root)}">{_h(entry.path.name)}</a> · '
        f'<a href="{_url(entry.sidecar, root)}">sidecar</a></p>'
        "</figcaption></figure>"
    )


def _failed_tile(row: dict[str, Any]) -> str:
    error = row.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    name = row.get("id") or row.get("where") or "job"
    return (
        f'<figure class="tile failed" data-search="{_h(str(name).lower())}" data-prompt="" data-seed="" data-time="">'
        f'<div class="error">{_h(row.get("status", "failed"))}</div><figcaption>'
        f'<p class="prompt">{_h(shorten(str(name), PROMPT_CHARS))}</p>'
        f"<p>{_h(shorten(str(message or ''), PROMPT_CHARS))}</p></figcaption></figure>"
    )


def _sweeps(entries: list[Entry]) -> dict[tuple[str, str, tuple[str, ...]], list[Entry]]:
    """Entries of matrix sweeps, grouped by folder, listed job and swept fields."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[Entry]] = {}
    for entry in entries:
        batch = entry.data.get("batch") if isinstance(entry.data.get("batch"), dict) else {}
        matrix = batch.get("matrix")
        if isinstance(matrix, dict) and matrix:
            key = (str(entry.sidecar.parent), str(batch.get("sweep", "")), tuple(matrix))
            groups.setdefault(key, []).append(entry)
    return groups


def _label(field: str, value: object) -> str:
    return f"{field.split('.')[-1]} {value}"


def _grid(
    key: tuple[str, str, tuple[str, ...]],
    members: list[Entry],
    root: Path,
    axes: list[str] | None,
    posters: dict[Path, str],
) -> str:
    """One sweep as tables: rows and columns are two swept fields (the first two, or `axes`);
    any further swept field splits the sweep into one table per value."""
    folder, sweep, fields = key
    # The fields asked for first (rows, then columns), then the sweep's others in manifest order.
    asked = [field for field in (axes or []) if field in fields]
    chosen = asked + [field for field in fields if field not in asked]
    rows_field = chosen[0]
    cols_field = chosen[1] if len(chosen) > 1 else None
    rest = [field for field in fields if field not in (rows_field, cols_field)]

    def values(field: str | None, among: list[Entry]) -> list[Any]:
        if field is None:
            return [None]
        seen: list[Any] = []
        for entry in among:
            value = entry.data["batch"]["matrix"].get(field)
            if value not in seen:
                seen.append(value)
        return seen

    def cell(entry: Entry, field: str | None) -> Any:
        return None if field is None else entry.data["batch"]["matrix"].get(field)

    where = Path(folder).relative_to(root).as_posix() if Path(folder).is_relative_to(root) else folder
    title = f"sweep: {sweep}" + (f" in {where}" if where not in ("", ".") else "")
    parts = [f'<section class="sweep"><h2>{_h(title)}</h2>']
    split: dict[tuple[Any, ...], list[Entry]] = {}
    for entry in members:
        split.setdefault(tuple(json.dumps(cell(entry, f), default=str) for f in rest), []).append(entry)
    for fixed, among in split.items():
        if rest:
            names = ", ".join(_label(f, json.loads(v)) for f, v in zip(rest, fixed, strict=True))
            parts.append(f"<h3>{_h(names)}</h3>")
        columns = values(cols_field, among)
        parts.append(f'<table class="grid" data-rows="{_h(rows_field)}" data-columns="{_h(cols_field or "")}">')
        parts.append("<thead><tr><th></th>")
        parts += [f'<th scope="col">{_h(_label(cols_field, v) if cols_field else "")}</th>' for v in columns]
        parts.append("</tr></thead><tbody>")
        for row_value in values(rows_field, among):
            parts.append(f'<tr><th scope="row">{_h(_label(rows_field, row_value))}</th>')
            for column in columns:
                match = [e for e in among if cell(e, rows_field) == row_value and cell(e, cols_field) == column]
                parts.append("<td>" + "".join(_tile(e, root, posters) for e in match) + "</td>")
            parts.append("</tr>")
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


STYLE = """
body{font:14px system-ui,sans-serif;background:#15171a;color:#e8e8e8;margin:0;padding:16px}
h1{font-size:18px;margin:0 0 12px}h2{font-size:15px;margin:20px 0 8px}h3{font-size:13px;color:#aaa}
.bar{display:flex;gap:12px;align-items:center;margin-bottom:12px;position:sticky;top:0;background:#15171a;padding:6px 0}
input,select{background:#22252a;color:#eee;border:1px solid #444;border-radius:4px;padding:4px 8px}
.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{width:260px;margin:0;background:#202328;border-radius:6px;overflow:hidden}
.tile video,.tile img,.tile .frame{width:260px;height:260px;object-fit:contain;background:#000;display:block}
.tile video,.tile img{image-rendering:pixelated}
.tile figcaption{padding:6px 8px;font-size:12px;color:#bbb}.tile p{margin:2px 0;overflow-wrap:anywhere}
.tile .prompt{color:#fff;font-size:13px}.tile .enhanced{color:#ccc;font-style:italic}.tile a{color:#8ab4f8}
.failed .error{height:120px;display:flex;align-items:center;justify-content:center;background:#4a1d1d;color:#fbb}
table.grid{border-collapse:collapse}table.grid th{font-weight:600;color:#ccc;padding:4px 8px}
table.grid td{vertical-align:top;padding:4px}.hidden{display:none!important}
"""

SCRIPT = """
const tiles=[...document.querySelectorAll('.tile')];
const filter=document.getElementById('filter'), sort=document.getElementById('sort');
filter.addEventListener('input',()=>{const q=filter.value.trim().toLowerCase();
  for(const t of tiles){t.classList.toggle('hidden',q!==''&&!t.dataset.search.includes(q));}});
sort.addEventListener('change',()=>{const list=document.getElementById('all');if(!list)return;
  const key=sort.value;const items=[...list.children];
  items.sort((a,b)=>key==='seed'?(Number(a.dataset.seed)-Number(b.dataset.seed))
    :key==='prompt'?a.dataset.prompt.localeCompare(b.dataset.prompt):a.dataset.time.localeCompare(b.dataset.time));
  for(const i of items)list.appendChild(i);});
const videos=[...document.querySelectorAll('video')];
function attach(v){if(v.src)return;if(v.dataset.poster)v.poster=v.dataset.poster;
  v.preload='metadata';v.src=v.dataset.src;}
if('IntersectionObserver' in window){
  const near=new IntersectionObserver(es=>{for(const e of es)if(e.isIntersecting){
    attach(e.target);near.unobserve(e.target);}},{rootMargin:'100% 0px'});
  for(const v of videos)near.observe(v);
}else{for(const v of videos)attach(v);}
for(const v of videos){
  v.addEventListener('mouseenter',()=>{attach(v);v.play().catch(()=>{});});
  v.addEventListener('mouseleave',()=>v.pause());
  v.addEventListener('click',()=>{attach(v);v.paused?v.play().catch(()=>{}):v.pause();});}
"""


def render(
    root: Path,
    entries: list[Entry],
    failed: list[dict[str, Any]] | None = None,
    axes: list[str] | None = None,
    posters: dict[Path, str] | None = None,
) -> str:
    posters = posters or {}
    sweeps = _sweeps(entries)
    in_sweep = {id(entry) for members in sweeps.values() for entry in members}
    rest = [entry for entry in entries if id(entry) not in in_sweep]
    body = [
        f"<h1>vidgen gallery: {_h(root.name or root)} ({len(entries)} outputs)</h1>",
        '<div class="bar"><input id="filter" type="search" placeholder="filter: prompt, model, seed" '
        'aria-label="filter"><label>sort <select id="sort"><option value="time">time</option>'
        '<option value="prompt">prompt</option><option value="seed">seed</option></select></label></div>',
    ]
    body += [_grid(key, members, root, axes, posters) for key, members in sweeps.items()]
    if rest or failed:
        body.append('<section><h2>outputs</h2><div class="tiles" id="all">')
        body += [_tile(entry, root, posters) for entry in rest]
        body += [_failed_tile(row) for row in failed or []]
        body.append("</div></section>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>vidgen gallery</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def write(root: Path, failed: list[dict[str, Any]] | None = None, axes: list[str] | None = None) -> Path:
    """Find the outputs under `root`, make the posters still missing, and write `root/index.html`
    (replacing an older one)."""
    from vidgen.browse import catalog, posters
    from vidgen.io import media

    entries = catalog.find(root)
    # Animated images are shown as they are: only videos and frame folders need a poster.
    pictured = posters.make(root, [entry for entry in entries if entry.path.suffix.lower() not in IMAGES])
    page = render(root, entries, failed, axes, pictured)
    target = root / PAGE
    media.write_text(page, target, overwrite=True)
    return target
