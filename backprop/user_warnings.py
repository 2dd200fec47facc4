"""Warnings that point at the user's line: the first frame outside the backprop package, however deep
inside it the warning was raised (Python 3.12's ``skip_file_prefixes``, for 3.10 and 3.11 too)."""
import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message, category=UserWarning):
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
