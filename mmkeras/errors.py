"""The one exception type that means "the user can fix this"."""


class UserError(Exception):
    """A mistake in the user's input: the message says which file and what was expected.

    The command line prints it without a traceback and exits with status 2.
    """
