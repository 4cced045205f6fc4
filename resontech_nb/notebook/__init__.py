"""The notebook front: the IPython magics, their line parsing and the session's settings."""
