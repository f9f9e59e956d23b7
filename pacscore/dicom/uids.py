"""What text can be a UID (PS3.5 9.1): digits and dots, at most 64 characters."""


def isUID(text):
    """Whether ``text`` can be a UID: 1 to 64 digits and dots."""
    return 0 < len(text) <= 64 and not text.strip("0123456789.")
