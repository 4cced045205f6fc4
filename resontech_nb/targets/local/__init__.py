"""The local target: NVFlare's simulator in a child process, its polls shortened, its sites forked."""
