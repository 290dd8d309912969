"""Operator tooling behind the CLI and the `systems_check` job: connection checks, stream operations, status."""
