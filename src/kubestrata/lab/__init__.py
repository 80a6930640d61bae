"""Lab nodes: systemd-nspawn machines in network namespaces, with an offline package mirror."""
