"""The CRI calls the layer checks make, as the kubelet makes them: runtime status, pod
sandboxes, containers, exec."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from kubestrata.cri import stubs


@dataclass(frozen=True)
class Pod:
    id: str
    config: object      # the PodSandboxConfig the sandbox was made with


class RuntimeClient:
    """A CRI client on a unix socket (e.g. containerd's, forwarded over SSH)."""

    def __init__(self, socket_path: str, timeout: float = 60.0):
        self.api, grpc_api = stubs.load()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.runtime = grpc_api.RuntimeServiceStub(self.channel)
        self.images = grpc_api.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def version(self):
        return self.runtime.Version(self.api.VersionRequest(), timeout=self.timeout)

    def conditions(self) -> dict[str, bool]:
        """Runtime conditions by type: RuntimeReady, NetworkReady."""
        status = self.runtime.Status(self.api.StatusRequest(), timeout=self.timeout).status
        return {c.type: c.status for c in status.conditions}

    def image_present(self, image: str) -> bool:
        spec = self.api.ImageSpec(image=image)
        reply = self.images.ImageStatus(self.api.ImageStatusRequest(image=spec), timeout=self.timeout)
        return bool(reply.image.id)

    def run_pod(self, name: str, namespace: str, uid: str, cgroup_parent: str) -> Pod:
        config = self.api.PodSandboxConfig(
            metadata=self.api.PodSandboxMetadata(name=name, namespace=namespace, uid=uid),
            hostname=name,
            # Where its containers log, as the kubelet lays it out. Never leave it empty: a
            # kubelet that removes an unknown container removes its log at log_directory/log_path,
            # and with both empty it removed the node's /bin and /boot (seen on lab nodes).
            log_directory=f"/var/log/pods/{namespace}_{name}_{uid}",
            linux=self.api.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent),
        )
        reply = self.runtime.RunPodSandbox(self.api.RunPodSandboxRequest(config=config),
                                           timeout=self.timeout)
        return Pod(reply.pod_sandbox_id, config)

    def pod_ip(self, pod: Pod) -> str:
        reply = self.runtime.PodSandboxStatus(
            self.api.PodSandboxStatusRequest(pod_sandbox_id=pod.id), timeout=self.timeout)
        return reply.status.network.ip

    def run_container(self, pod: Pod, name: str, image: str, command: list[str]) -> str:
        config = self.api.ContainerConfig(
            metadata=self.api.ContainerMetadata(name=name),
            image=self.api.ImageSpec(image=image),
            command=command,
            log_path=f"{name}/0.log",
        )
        created = self.runtime.CreateContainer(self.api.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config), timeout=self.timeout)
        self.runtime.StartContainer(self.api.StartContainerRequest(
            container_id=created.container_id), timeout=self.timeout)
        return created.container_id

    def container_running(self, container_id: str) -> bool:
        reply = self.runtime.ContainerStatus(
            self.api.ContainerStatusRequest(container_id=container_id), timeout=self.timeout)
        return reply.status.state == self.api.CONTAINER_RUNNING

    def exec(self, container_id: str, command: list[str], timeout: int = 20) -> tuple[int, str]:
        """Run command in the container; (exit code, stdout + stderr)."""
        reply = self.runtime.ExecSync(self.api.ExecSyncRequest(
            container_id=container_id, cmd=command, timeout=timeout), timeout=timeout + 10)
        return reply.exit_code, (reply.stdout + reply.stderr).decode(errors="replace")

    def remove_pod(self, pod: Pod) -> None:
        """Stop and remove the sandbox and its containers."""
        self.runtime.StopPodSandbox(self.api.StopPodSandboxRequest(pod_sandbox_id=pod.id),
                                    timeout=self.timeout)
        self.runtime.RemovePodSandbox(self.api.RemovePodSandboxRequest(pod_sandbox_id=pod.id),
                                      timeout=self.timeout)
