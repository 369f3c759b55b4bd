"""Storage and service URLs as they may be shown: with every password hidden.

A URL carries credentials (`postgresql://user:secret@host/db`, `?password=`);
`repr`, logs and error messages show `redact(url)` instead, which never raises,
however malformed the URL is.
"""

from __future__ import annotations

import re

_AUTHORITY_PASSWORD = re.compile(r"(?P<head>^[^:/?#]*://[^/?#@]*?:)(?P<secret>[^/?#]*)(?P<tail>@)")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pass|token|secret|auth_token|api_key)=)(?P<secret>[^&;#]*)",
    re.IGNORECASE,
)


def redact(url: object) -> str:
    """The URL with the password of its authority and secret query values replaced by `***`."""
    text = url if isinstance(url, str) else repr(url)
    text = _AUTHORITY_PASSWORD.sub(r"\g<head>***\g<tail>", text, count=1)
    return _QUERY_SECRET.sub(r"\g<head>***", text)
