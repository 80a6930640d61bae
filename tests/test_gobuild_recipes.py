"""A recipe maps the modules an upstream go.mod replaces with local paths to released versions, by
the component's rule, and keeps upstream's other replaces: Kubernetes' staging modules (a
replace block) become v0.x.y, Pulumi's `../sdk` (one line) the CLI's own version."""

from kubestrata import gobuild

KUBERNETES = """module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

require (
\tgithub.com/blang/semver/v4 v4.0.0
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""

CLIPBOARD = "github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"
PULUMI = f"""module github.com/pulumi/pulumi/pkg/v3

go 1.26.6

replace github.com/pulumi/pulumi/sdk/v3 => ../sdk

replace github.com/atotto/clipboard => {CLIPBOARD}

require (
\tgithub.com/pulumi/pulumi/sdk/v3 v3.274.1
\tgithub.com/atotto/clipboard v0.1.4 // indirect
)
"""


def replace_lines(text: str) -> list[str]:
    block = text[text.index("replace (\n") + len("replace (\n"):]
    return [line.strip() for line in block[:block.index(")")].splitlines()]


def test_kubernetes_staging_modules_become_their_v0_releases():
    kubernetes = gobuild.COMPONENTS["kubernetes"]
    local = gobuild.local_replaces(KUBERNETES)
    assert local == ["k8s.io/api", "k8s.io/client-go"]
    text = gobuild.recipe_text(kubernetes, "1.36.3", KUBERNETES, local)
    assert replace_lines(text) == ["k8s.io/api => k8s.io/api v0.36.3",
                                   "k8s.io/client-go => k8s.io/client-go v0.36.3"]
    assert "go 1.26.0\ngodebug default=go1.26\n" in text


def test_pulumi_sdk_becomes_the_clis_version_and_other_replaces_stay():
    pulumi = gobuild.COMPONENTS["pulumi"]
    local = gobuild.local_replaces(PULUMI)
    assert local == ["github.com/pulumi/pulumi/sdk/v3"]
    text = gobuild.recipe_text(pulumi, "3.274.1", PULUMI, local)
    assert replace_lines(text) == [
        "github.com/pulumi/pulumi/sdk/v3 => github.com/pulumi/pulumi/sdk/v3 v3.274.1",
        f"github.com/atotto/clipboard => {CLIPBOARD}"]
    assert "tool (\n\tgithub.com/pulumi/pulumi/pkg/v3/cmd/pulumi\n)" in text


def test_the_committed_pulumi_recipe_was_written_so():
    committed = (gobuild.recipe("pulumi", "3.274.1") / "go.mod").read_text()
    assert replace_lines(committed) == [
        f"github.com/atotto/clipboard => {CLIPBOARD}",
        "github.com/pulumi/pulumi/sdk/v3 => github.com/pulumi/pulumi/sdk/v3 v3.274.1"]
