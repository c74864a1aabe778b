"""The `runner` command: a thin layer of argument parsing and printing over the library."""
