"""A small client for the Kubernetes CRI (Container Runtime Interface), built from the real
api.proto: it talks to containerd's or CRI-O's socket as the kubelet does (crictl is not
obtainable here)."""
