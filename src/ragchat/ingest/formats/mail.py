"""E-mail messages (.eml, RFC 5322 / MIME) -> one page of text, through the standard library's email package.

The page starts with the Subject, From, To, Cc and Date headers (encoded words decoded), then the
body: the plain-text part when there is one, otherwise the HTML part turned into text. Attachments
are listed by name and type at the end; they are not read (add them as files of their own).

Left out: Outlook's .msg format (an OLE file, not MIME), signed or encrypted bodies (S/MIME, PGP),
and the quoted history of replies, which is kept as written.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from email.message import EmailMessage

from ragchat.core.errors import LoadError
from ragchat.ingest.decode import clean, decode_text
from ragchat.ingest.formats.html import html_to_text

HEADERS = ("Subject", "From", "To", "Cc", "Date")


def eml_text(data: bytes) -> str:
    try:
        message: EmailMessage = BytesParser(policy=policy.default).parsebytes(data)
        lines = []
        for name in HEADERS:
            value = message.get(name)
            if value is not None and str(value).strip():
                lines.append(f"{name}: {' '.join(str(value).split())}")
        body = ""
        part = message.get_body(preferencelist=("plain", "html"))
        if part is not None:
            raw = part.get_payload(decode=True) or b""
            charset = part.get_content_charset()
            if part.get_content_subtype() == "html":
                body = html_to_text(_as_utf8(raw, charset)) if raw else ""
            else:
                body = clean(_decode(raw, charset, decode_text)).strip()
        attachments = []
        for attachment in message.iter_attachments():
            name = attachment.get_filename()
            if not name and attachment.get_content_type() == "message/rfc822":
                inner = attachment.get_payload()
                inner = inner[0] if isinstance(inner, list) and inner else inner
                name = f"forwarded message: {inner.get('Subject', '')}" if hasattr(inner, "get") else "forwarded message"
            attachments.append(f"- {name or 'unnamed'} ({attachment.get_content_type()})")
    except (LoadError, MemoryError, RecursionError):
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise LoadError(f"corrupt e-mail message: {detail}", reason="corrupt") from None

    blocks = ["\n".join(lines), body]
    if attachments:
        blocks.append("Attachments (not read):\n" + "\n".join(attachments))
    return "\n\n".join(b for b in blocks if b.strip())


def _decode(raw: bytes, charset: str | None, guess) -> str:
    if charset:
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError):  # a wrong or unknown label: guess instead
            pass
    return guess(raw)


def _as_utf8(raw: bytes, charset: str | None) -> bytes:
    """HTML bodies go to the HTML reader as bytes; the MIME charset outranks a <meta> tag, so re-encode."""
    return _decode(raw, charset, decode_text).encode("utf-8")
