"""The one error type for bad input: its message says what was wrong and what is accepted, and the UI shows
it as is (never a traceback)."""



class InputError(ValueError):
    """Bad user input; the message is meant to be shown to the user as is."""
