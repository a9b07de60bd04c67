"""The chart of scripts/bench's report (standard library only): backup time,
bytes uploaded and recovery time against data size, one panel each, drawn
from the statistics of stats.compute()."""
import math

from stats import MiB

H, PW, PH = 380, 300, 250
# One panel's width on the page, its plot and its margins.
STEP = 355
# A bold 12 px title's width per character, over-estimated: titles must fit.
TITLE_CHAR = 7.5
COL = {"ours": "#1f77b4", "orig": "#d62728", "floor": "#2ca02c", "seed": "#d62728", "ours-sftp": "#1f77b4",
       "read": "#7f7f7f"}


def panels(st):
    """[(title, ylabel, [(label, color, dash, [(x, y)])])]"""
    B, R, sizes = st.B, st.R, st.sizes

    def series(src, keyf, valf):
        pts = []
        for s in st.size_names:
            v = src.get(keyf(s))
            if v is not None and valf(v) is not None:
                pts.append((sizes[s]["size_bytes"], valf(v)))
        return pts

    return [
        ("Backup cycle, v3 API: wall time", "seconds (median)", [
            ("ours, local", COL["ours"], "", series(B, lambda s: (s, "v3", "local", "ours"), lambda v: v["wall_med"])),
            ("ours, sftp", COL["ours"], "6,3", series(B, lambda s: (s, "v3", "sftp", "ours"), lambda v: v["wall_med"])),
            ("original, local", COL["orig"], "", series(B, lambda s: (s, "v3", "local", "orig"), lambda v: v["wall_med"])),
            ("original, sftp", COL["orig"], "6,3", series(B, lambda s: (s, "v3", "sftp", "orig"), lambda v: v["wall_med"])),
            ("ours, S3", COL["ours"], "2,2", series(B, lambda s: (s, "v3", "s3", "ours"), lambda v: v["wall_med"])),
            ("original, S3", COL["orig"], "2,2", series(B, lambda s: (s, "v3", "s3", "orig"), lambda v: v["wall_med"])),
            ("floor: snapshot save", COL["floor"], "", series(B, lambda s: (s, "v3", "-", "floor-snap"), lambda v: v["wall_med"])),
        ]),
        ("Backup cycle: bytes uploaded", "MiB (median)", [
            ("ours, v3", COL["ours"], "", series(B, lambda s: (s, "v3", "local", "ours"), lambda v: v["bytes_up_med"] / MiB)),
            ("ours, v2", COL["ours"], "6,3", series(B, lambda s: (s, "v2", "local", "ours"), lambda v: v["bytes_up_med"] / MiB)),
            ("original, v3", COL["orig"], "", series(B, lambda s: (s, "v3", "local", "orig"), lambda v: v["bytes_up_med"] / MiB)),
            ("original, v2", COL["orig"], "6,3", series(B, lambda s: (s, "v2", "local", "orig"), lambda v: v["bytes_up_med"] / MiB)),
        ]),
        ("Recovery of 3 members: wall time", "seconds (median)", [
            ("ours, v3", COL["ours"], "", series(R, lambda s: (s, "v3", "ours"), lambda v: v["wall_med"])),
            ("ours, v2", COL["ours"], "6,3", series(R, lambda s: (s, "v2", "ours"), lambda v: v["wall_med"])),
            ("seed procedure, v2", COL["seed"], "", series(R, lambda s: (s, "v2", "seed"), lambda v: v["wall_med"])),
            ("floor, v3", COL["floor"], "", series(R, lambda s: (s, "v3", "floor"), lambda v: v["wall_med"])),
            ("floor, v2", COL["floor"], "6,3", series(R, lambda s: (s, "v2", "floor"), lambda v: v["wall_med"])),
        ]),
    ]


def ticks(top):
    """Round ticks from 0 up to at least `top`: a step of 1, 2 or 5 times a
    power of ten, at most 5 intervals; each label as short as its step
    allows (no 1.07e+03)."""
    if top <= 0:
        top = 1
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [(i * step, f"{i * step:.{decimals}f}") for i in range(n + 1)]


def chart(st):
    """The SVG document, as text: one panel per measurement the run has
    (a scenario the run did not measure draws no empty panel)."""
    sizes, size_names = st.sizes, st.size_names
    xs = [sizes[s]["size_bytes"] for s in size_names]
    drawn = [p for p in panels(st) if any(pts for _, _, _, pts in p[2])]
    W = 55 + max(len(drawn), 1) * STEP
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    lx = [math.log2(x) for x in xs] or [0]
    x0, x1 = min(lx), max(lx)
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 1, x1 + 1
    for i, (title, ylab, ser) in enumerate(drawn):
        ox, oy = 55 + i * STEP, 40
        assert len(title) * TITLE_CHAR <= STEP - 10, f"chart title too long for its panel: {title}"
        marks = ticks(max([y for _, _, _, pts in ser for _, y in pts] or [1]) * 1.05)
        ymax = marks[-1][0]
        X = lambda x: ox + (math.log2(x) - x0) / (x1 - x0) * (PW - 20) + 10  # noqa: E731
        Y = lambda y: oy + PH - y / ymax * PH  # noqa: E731
        out.append(f'<text x="{ox}" y="{oy - 18}" font-size="12" font-weight="bold">{title}</text>')
        out.append(f'<line x1="{ox}" y1="{oy + PH}" x2="{ox + PW}" y2="{oy + PH}" stroke="black"/>')
        out.append(f'<line x1="{ox}" y1="{oy}" x2="{ox}" y2="{oy + PH}" stroke="black"/>')
        for yv, label in marks:
            out.append(f'<line x1="{ox - 4}" y1="{Y(yv):.1f}" x2="{ox + PW}" y2="{Y(yv):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{ox - 6}" y="{Y(yv) + 4:.1f}" text-anchor="end">{label}</text>')
        for s in size_names:
            xv = sizes[s]["size_bytes"]
            out.append(f'<text x="{X(xv):.1f}" y="{oy + PH + 15}" text-anchor="middle">{s}</text>')
        out.append(f'<text x="{ox + PW / 2}" y="{oy + PH + 30}" text-anchor="middle">data size (log scale)</text>')
        out.append(f'<text x="{ox - 42}" y="{oy + PH / 2}" transform="rotate(-90 {ox - 42} {oy + PH / 2})" '
                   f'text-anchor="middle">{ylab}</text>')
        ly = oy + 4
        for label, color, dash, pts in ser:
            if not pts:
                continue
            d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
            da = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{da}/>')
            for x, y in pts:
                out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{color}"><title>{label}: {y:.2f}</title></circle>')
            out.append(f'<line x1="{ox + 12}" y1="{ly}" x2="{ox + 36}" y2="{ly}" stroke="{color}" stroke-width="2"{da}/>')
            out.append(f'<text x="{ox + 40}" y="{ly + 4}">{label}</text>')
            ly += 14
    out.append("</svg>")
    return "\n".join(out) + "\n"
