"""The command line: the parser, one module per command group, and the mapping of errors to exit codes."""
