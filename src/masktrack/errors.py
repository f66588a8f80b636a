"""Errors that the command line reports as one line with exit code 2."""


class InputError(Exception):
    """Bad user input: the message names the file and the problem."""
