"""The machine's one sidecar: its runtime files, lock, token handshake, socket server, clients."""
