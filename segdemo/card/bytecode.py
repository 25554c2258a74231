"""What a Lambda layer's stored function says without running it: Keras keeps it as base64 of marshalled Python
bytecode, often of another Python version. Unmarshalling it would build a code object from untrusted bytes
(`marshal` is not safe against crafted data), so the bytes are only scanned for the type markers of short
strings (the names the code uses) and of numeric constants."""

import base64
import math
import re
import struct

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
IGNORED_NAMES = {"<lambda>", "x", "inputs", "args", "kwargs"}


def stored_code_bytes(config):
    """The marshalled bytecode a Lambda's config stores (Keras 2's [code, defaults, closure] or Keras 3's
    `__lambda__`), or b"" (never unmarshalled)."""
    function = config.get("function")
    if isinstance(function, dict):
        function = (function.get("config") or {}).get("code") if function.get("class_name") == "__lambda__" else None
    elif isinstance(function, (list, tuple)) and function:
        function = function[0]
    if not isinstance(function, str):
        return b""
    try:
        return base64.b64decode(function.encode("ascii"), validate=False)
    except (ValueError, UnicodeEncodeError):
        return function.encode("raw_unicode_escape", errors="ignore")


def scan_marshal(data):
    """(identifiers, numbers) found in marshalled code by their type bytes: short strings and the 8-byte floats
    and 4-byte ints of its constants. A scan, not a parse: nothing is built from the bytes."""
    names, numbers, index = [], [], 0
    while index < len(data):
        code = data[index] & 0x7F
        if code in (ord("z"), ord("Z")) and index + 1 < len(data):
            length = data[index + 1]
            text = data[index + 2:index + 2 + length]
            if len(text) == length and IDENTIFIER.fullmatch(text.decode("latin-1")):
                names.append(text.decode("ascii"))
                index += 2 + length
                continue
        elif code == ord("g") and index + 9 <= len(data):
            (value,) = struct.unpack("<d", data[index + 1:index + 9])
            if math.isfinite(value) and (value == 0 or 1e-6 <= abs(value) <= 1e6):
                numbers.append(value)
                index += 9
                continue
        elif code == ord("i") and index + 5 <= len(data):
            (value,) = struct.unpack("<i", data[index + 1:index + 5])
            if 0 < abs(value) <= 100_000 and index > 16:  # past the code object's header fields
                numbers.append(float(value))
                index += 5
                continue
        index += 1
    unique_names = [name for name in dict.fromkeys(names) if name not in IGNORED_NAMES]
    return unique_names, list(dict.fromkeys(numbers))
