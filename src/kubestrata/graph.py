"""`kubestrata graph`: a picture of a topology as SVG.

Rows from top to bottom: the API endpoint (the virtual IP for HA), the control-plane nodes,
the etcd members, the workers; a node with several roles appears once, in its first row.
Lines show who talks to whom: endpoint -> API servers -> etcd.
"""

from __future__ import annotations

from html import escape

from kubestrata.topology import Node, Topology

BOX_W, BOX_H, GAP_X, ROW_H, MARGIN = 150, 58, 24, 110, 30
COLOURS = {"control_plane": "#dbe9ff", "etcd": "#ffe9c7", "worker": "#dff5e1", "lb": "#f3e1ff",
           "endpoint": "#ffffff"}
ROWS = ("control_plane", "etcd", "worker", "lb")


def _rows(topology: Topology) -> list[tuple[str, list[Node]]]:
    placed: set[str] = set()
    rows = []
    for role in ROWS:
        nodes = [n for n in topology.with_role(role) if n.name not in placed]
        placed.update(n.name for n in nodes)
        if nodes:
            rows.append((role, nodes))
    return rows


def render(topology: Topology) -> str:
    rows = _rows(topology)
    widest = max(len(nodes) for _, nodes in rows)
    width = max(2 * MARGIN + widest * BOX_W + (widest - 1) * GAP_X, 780)
    height = 2 * MARGIN + 60 + (len(rows) + 1) * ROW_H
    centre = {}
    parts = []

    def box(x, y, fill, lines, dashed=False):
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        parts.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" '
                     f'fill="{fill}" stroke="#333"{dash}/>')
        for i, (text, weight) in enumerate(lines):
            parts.append(f'<text x="{x + BOX_W / 2}" y="{y + 18 + i * 16}" text-anchor="middle" '
                         f'font-weight="{weight}">{escape(text)}</text>')

    top = MARGIN + 60
    host, port = topology.api_endpoint
    ex = (width - BOX_W) / 2
    box(ex, top, COLOURS["endpoint"],
        [("API endpoint", "bold"), (f"{host}:{port}", "normal"),
         ("virtual IP (keepalived)" if topology.is_ha else "control-plane node", "normal")],
        dashed=topology.is_ha)
    endpoint = (ex + BOX_W / 2, top + BOX_H)

    for r, (role, nodes) in enumerate(rows, start=1):
        y = top + r * ROW_H
        span = len(nodes) * BOX_W + (len(nodes) - 1) * GAP_X
        for i, node in enumerate(nodes):
            x = (width - span) / 2 + i * (BOX_W + GAP_X)
            box(x, y, COLOURS[role], [
                (node.name, "bold"), (str(node.address), "normal"),
                (f"{'+'.join(_short(r) for r in node.roles)} · {node.cpus} vCPU · "
                 f"{node.memory_mib // 1024 if node.memory_mib >= 1024 else node.memory_mib}"
                 f"{' GiB' if node.memory_mib >= 1024 else ' MiB'}", "normal")])
            centre[node.name] = (x + BOX_W / 2, y, y + BOX_H)

    lines = []
    for node in topology.with_role("control_plane"):
        cx, cy, _ = centre[node.name]
        if topology.is_ha:
            lines.append((*endpoint, cx, cy))
        for member in topology.with_role("etcd"):
            if member.name != node.name:
                mx, my, _ = centre[member.name]
                lines.append((cx, centre[node.name][2], mx, my))
    if not topology.is_ha:
        cx, cy, _ = centre[topology.with_role("control_plane")[0].name]
        lines.append((*endpoint, cx, cy))
    edges = [f'<line x1="{a}" y1="{b}" x2="{c}" y2="{d}" stroke="#888"/>' for a, b, c, d in lines]

    title = f"{topology.name} · {len(topology.nodes)} nodes · {topology.runtime} · {topology.cni}"
    networks = (f"nodes {topology.network} · pods {topology.pod_cidr} · "
                f"services {topology.service_cidr} · workers reach the API through the endpoint")
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<rect x="8" y="8" width="{width - 16:.0f}" height="{height - 16:.0f}" rx="10" '
        f'fill="none" stroke="#bbb" stroke-dasharray="6,4"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 6}" font-size="14" font-weight="bold">'
        f'{escape(title)}</text>',
        f'<text x="{MARGIN}" y="{MARGIN + 26}">{escape(networks)}</text>',
        *edges, *parts, "</svg>", ""])


def _short(role: str) -> str:
    return {"control_plane": "cp", "worker": "worker", "etcd": "etcd", "lb": "lb"}[role]
