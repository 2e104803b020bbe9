"""An HTML page for `dvc plots show` / `dvc plots diff` that needs no network.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN. `write_page` writes
`.dvc/plots/offline.html` with the three libraries inlined (the bundle that
`vl-convert-python` ships), and `.dvc/config` names it as `plots.html_template`, so the
plots page opens on a machine without internet. The page is generated (about 0.9 MB) and
git-ignored; `make run` and `make plots` write it.
"""

from __future__ import annotations

import html
from pathlib import Path

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{{refresh_tag}}
<title>leadprop — DVC plots</title>
<!-- Vega {vega}, Vega-Lite {vegalite}, Vega-Embed {embed}: inlined, no network needed -->
<script>{bundle}</script>
<style>body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-spacing: 15px; }}</style>
</head>
<body>
<h1>leadprop — DVC plots</h1>
<p>Curves are coloured by scorer; with <code>dvc plots diff</code> each revision has its
own dash pattern.</p>
{{plot_divs}}
</body>
</html>
"""


def page() -> str:
    """The page text, with `{plot_divs}` and `{refresh_tag}` left for DVC to fill."""
    import vl_convert

    bundle = vl_convert.javascript_bundle().replace("</script", "<\\/script")
    return PAGE.format(
        bundle=bundle,
        vega=html.escape(vl_convert.get_vega_version()),
        vegalite=html.escape(vl_convert.get_vegalite_versions()[-1]),
        embed=html.escape(vl_convert.get_vega_embed_version()),
    )


def write_page(root: Path | str = ".") -> Path:
    """Write `<root>/.dvc/plots/offline.html` (only when missing or changed); return it."""
    path = Path(root) / ".dvc" / "plots" / "offline.html"
    text = page()
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def render_images(plots_json: Path | str, out_dir: Path | str) -> list[Path]:
    """PNG images of the plots in `dvc plots show --json` output (Vega-Lite rendered by
    vl-convert, no browser or network): `make docs-images` puts them in docs/images."""
    import json

    import vl_convert

    out, written = Path(out_dir), []
    out.mkdir(parents=True, exist_ok=True)
    data = json.loads(Path(plots_json).read_text(encoding="utf-8"))["data"]
    for name, items in data.items():
        for item in items:
            if item.get("type") != "vega":
                continue
            path = out / f"dvc_plot_{Path(name).stem}.png"
            path.write_bytes(vl_convert.vegalite_to_png(item["content"], scale=1.5))
            written.append(path)
    return written


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3:
        print("\n".join(str(p) for p in render_images(sys.argv[1], sys.argv[2])))
    else:
        print(write_page())
