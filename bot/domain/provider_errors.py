"""Typed errors of the Videos API client; each carries the provider's code and message."""

from __future__ import annotations


class VideoAPIError(Exception):
    """The provider answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status else "no response"]
        if self.code:
            parts.append(self.code)
        return f"{self.message} ({', '.join(parts)})"


class BadRequest(VideoAPIError):
    """400/422: the request itself is wrong; retrying will not help."""


class AuthenticationError(VideoAPIError):
    """401/403: the key is missing, wrong or lacks access."""


class NotFound(VideoAPIError):
    """404: unknown video, or an endpoint this provider does not implement."""


class RateLimited(VideoAPIError):
    """429 after the retries ran out."""


class ServerError(VideoAPIError):
    """5xx after the retries ran out."""


class ConnectionFailed(VideoAPIError):
    """No usable answer: connection refused or reset, timeout, or a body that is not JSON."""


class SubmitUncertain(VideoAPIError):
    """A create request may or may not have reached the provider, and we could not find out.

    Raised instead of retrying blindly, because a blind retry could start (and bill) a second job.
    """


class UnsupportedEndpoint(VideoAPIError):
    """The provider does not implement this optional endpoint (e.g. list or delete)."""


class DownloadTooLarge(VideoAPIError):
    """The provider's file is larger than the bot accepts (``MAX_DOWNLOAD_BYTES``): by its
    ``Content-Length``, or counted while streaming when the header was missing or wrong. Not
    retried: the same file would be refused again."""

    def __init__(self, message: str, *, limit: int, size: int | None = None) -> None:
        super().__init__(message, code="download_too_large")
        self.limit = limit
        self.size = size
