"""kubestrata: Kubernetes in four topologies, layer by layer, each layer proven."""
