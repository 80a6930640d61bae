"""A cluster's Secrets encryption keys as the controller keeps them, and the steps of Kubernetes'
key rotation on them ("Encrypting Confidential Data at Rest", kubernetes.io): read (every API
server can decrypt with the key), write (they encrypt with it), retire (once every Secret is
rewritten with it, the other keys go).

The state: write, the key that encrypts new writes (identity: none); keys, every key the API
servers hold, oldest first ({name, secret}); retired, keys taken off them, kept because etcd
snapshots taken before still need them."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

IDENTITY = "identity"


def _names(keys: list[dict]) -> list[str]:
    return [key["name"] for key in keys]


def kubeadm_encryption_steps(state: dict, steps: list[str], target: str, new_secret: str) -> dict:
    """The state after the steps towards target (a key's name, or identity); new_secret is the
    target's secret when the read step adds it."""
    state = {"write": state.get("write", IDENTITY), "keys": list(state.get("keys", [])),
             "retired": list(state.get("retired", []))}
    if target in _names(state["retired"]):
        raise AnsibleFilterError(f"the key name {target} was used before (it is retired); "
                                 "give the new key a name of its own")
    for step in steps:
        if step == "read":
            if target != IDENTITY and target not in _names(state["keys"]):
                state["keys"].append({"name": target, "secret": new_secret})
        elif step == "write":
            if target != IDENTITY and target not in _names(state["keys"]):
                raise AnsibleFilterError(f"{target} cannot encrypt before the API servers hold it")
            state["write"] = target
        elif step == "retire":
            state["retired"] += [key for key in state["keys"] if key["name"] != target]
            state["keys"] = [key for key in state["keys"] if key["name"] == target]
        else:
            raise AnsibleFilterError(f"unknown step {step!r}; steps are read, write, retire")
    return state


def kubeadm_encryption_providers(state: dict, provider: str) -> list[dict]:
    """The providers of an EncryptionConfiguration for the state: the key that encrypts first and
    identity last (plain Secrets written before stay readable); identity first while the API
    servers hold keys but do not encrypt yet (or any more); none without keys."""
    keys = state.get("keys", [])
    if not keys:
        return []
    write = state.get("write", IDENTITY)
    ordered = [key for key in keys if key["name"] == write] + \
        [key for key in keys if key["name"] != write]
    encrypting = {provider: {"keys": [{"name": k["name"], "secret": k["secret"]} for k in ordered]}}
    plain = {IDENTITY: {}}
    return [plain, encrypting] if write == IDENTITY else [encrypting, plain]


class FilterModule:
    def filters(self):
        return {"kubeadm_encryption_steps": kubeadm_encryption_steps,
                "kubeadm_encryption_providers": kubeadm_encryption_providers}
