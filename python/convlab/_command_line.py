"""What every `python -m convlab` command shares: an argument parser whose errors are raised
(not printed with the usage), and the one-line report of any error.

A command that fails prints one line to stderr and exits with status 2:

    convlab: error: load_image: image file 'digit.png' does not exist

`--debug` anywhere on the command line (or CONVLAB_DEBUG=1 in the environment) lets the
exception through instead, with its traceback.
"""

import argparse
import os

__all__ = ["CommandLineError", "ArgumentParser", "debug_requested", "one_line"]

DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "CONVLAB_DEBUG"


class CommandLineError(Exception):
    """Bad arguments on the command line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a bad argument raises CommandLineError naming the
    command, instead of printing the usage and exiting (--help still prints and exits 0)."""

    def error(self, message):
        raise CommandLineError(f"{self.prog}: {message} (see {self.prog} --help)")


def debug_requested(argv, environ=None):
    """(debug?, argv without --debug): --debug on the command line or CONVLAB_DEBUG set to
    anything but '', '0' or 'false'."""
    environ = os.environ if environ is None else environ
    from_environment = environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")
    return DEBUG_FLAG in argv or from_environment, [argument for argument in argv if argument != DEBUG_FLAG]


def one_line(error):
    """The error as one line: its message (newlines folded), with the exception's name in front
    unless it is one of the ordinary kinds whose message says everything (bad values, files)."""
    message = " ".join(str(error).split())
    if isinstance(error, (CommandLineError, ValueError, TypeError, OSError, RuntimeError)) and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
