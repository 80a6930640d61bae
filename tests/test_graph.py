"""The topology picture: one box per node, the endpoint, and the README's copies up to date."""

import xml.etree.ElementTree as ET

import pytest

from kubestrata import graph, topology
from kubestrata.paths import PROJECT_ROOT

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("name", topology.NAMES)
def test_every_node_and_the_endpoint_are_drawn(name):
    t = topology.load(name)
    root = ET.fromstring(graph.render(t))
    texts = [el.text for el in root.iter(f"{SVG}text")]
    assert all(n.name in texts and str(n.address) in texts for n in t.nodes)
    host, port = t.api_endpoint
    assert f"{host}:{port}" in texts
    assert len(root.findall(f"{SVG}rect")) == 2 + 1 + len(t.nodes)   # background, frame, endpoint


@pytest.mark.parametrize("name", topology.NAMES)
def test_the_readme_pictures_match_the_topologies(name):
    committed = (PROJECT_ROOT / "docs" / "img" / f"{name}.svg").read_text()
    assert committed == graph.render(topology.load(name)), \
        f"regenerate: kubestrata graph {name} -o docs/img/{name}.svg"
