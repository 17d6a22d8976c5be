"""Host header allow-list matching (exact names, or "*.example.com" for any subdomain)."""

from __future__ import annotations


def host_name(value: bytes) -> str:
    """The host part of a Host header value: without the port, IPv6 literals kept bracketed."""
    host = value.decode("latin-1").lower()
    if host.startswith("["):  # [::1]:8000
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(value: bytes, allowed: frozenset[str]) -> bool:
    host = host_name(value)
    if host in allowed:
        return True
    return any(pattern.startswith("*.") and host.endswith(pattern[1:]) for pattern in allowed)
