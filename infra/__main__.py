"""kubestrata on libvirt: `pulumi up` from the project root runs this (docs/libvirt.md); the
program itself is program.program(), which `kubestrata up --provider libvirt` runs inline."""

from program import program

program()
