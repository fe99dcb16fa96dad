"""The PBX side: the ccall API client, verified recording downloads, and the HTTP plumbing."""
