"""The execution graph as SVG: the seed's "pipeline execution screenshot".

Train -> CreateModel -> RegisterModel and CreateModel -> DeployEndpoint, each step a box
coloured by its status and labelled with its duration. Plain SVG, no dependencies.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from custseg.store.executions import ExecutionRow, StepRow

__all__ = ["STATUS_COLOURS", "render_svg"]

STATUS_COLOURS = {  # stroke, fill
    "Succeeded": ("#2e7d32", "#e8f5e9"),
    "Cached": ("#1565c0", "#e3f2fd"),
    "Failed": ("#c62828", "#ffebee"),
    "Executing": ("#ef6c00", "#fff3e0"),
    "Skipped": ("#757575", "#f5f5f5"),
    "Pending": ("#9e9e9e", "#fafafa"),
}
LAYOUT = {  # step: (x, y) of the box's top-left corner
    "Train": (30, 118),
    "CreateModel": (250, 118),
    "RegisterModel": (490, 50),
    "DeployEndpoint": (490, 186),
}
EDGES = (
    ("Train", "CreateModel"),
    ("CreateModel", "RegisterModel"),
    ("CreateModel", "DeployEndpoint"),
)
BOX_W, BOX_H = 180, 64
WIDTH, HEIGHT = 710, 330


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _edge(a: str, b: str) -> str:
    (ax, ay), (bx, by) = LAYOUT[a], LAYOUT[b]
    x1, y1 = ax + BOX_W, ay + BOX_H / 2
    x2, y2 = bx - 4, by + BOX_H / 2
    mid = (x1 + x2) / 2
    return (
        f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" '
        f'stroke="#607d8b" stroke-width="2" marker-end="url(#arrow)"/>'
    )


def _box(step: StepRow) -> str:
    name, status = step.name, step.status
    stroke, fill = STATUS_COLOURS.get(status, STATUS_COLOURS["Pending"])
    x, y = LAYOUT[name]
    label = f"{status} · {_duration(step.seconds)}"
    title = escape(step.error or step.reason or status)
    return (
        f'<g class="step" data-step="{escape(name)}" data-status="{escape(status)}">'
        f"<title>{title}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="10" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="2.5"/>'
        f'<text x="{x + BOX_W / 2}" y="{y + 27}" text-anchor="middle" font-weight="600" '
        f'font-size="15" fill="#263238">{escape(name)}</text>'
        f'<text x="{x + BOX_W / 2}" y="{y + 48}" text-anchor="middle" font-size="13" '
        f'fill="{stroke}">{escape(label)}</text></g>'
    )


def render_svg(execution: ExecutionRow) -> str:
    """An SVG document for an execution as recorded in the store."""
    steps = {s.name: s for s in execution.steps}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" '
        f'role="img" aria-label="execution graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#607d8b"/></marker></defs>',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="30" y="30" font-size="17" font-weight="600" fill="#263238">'
        f"{escape(execution.pipeline_name)} v{execution.pipeline_version} · "
        f"execution {escape(execution.id)}</text>",
        f'<text x="30" y="52" font-size="13" fill="#546e7a">{escape(execution.status)} · '
        f"started {escape(execution.started_at[:19].replace('T', ' '))} UTC</text>",
    ]
    parts += [_edge(a, b) for a, b in EDGES]
    parts += [_box(steps[name]) for name in LAYOUT if name in steps]
    x = 30
    for status, (stroke, fill) in STATUS_COLOURS.items():
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 34}" width="14" height="14" rx="3" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="2"/>'
            f'<text x="{x + 20}" y="{HEIGHT - 22}" font-size="12" fill="#455a64">'
            f"{status}</text>"
        )
        x += 30 + 8 * len(status)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
