"""Pure functions that turn engine results into what the page shows: safe Markdown and small HTML.

Nothing here imports Gradio or touches the engine, so every function is easy to test on its own.

Two rules hold everywhere:
- Text that comes from documents, file names or the LLM is escaped before it goes into HTML.
- Markdown from answers, questions and notices goes through ``answer.sanitize.safe_markdown`` (the
  one sanitizer, here with bare URLs too) before display: external images and links, autolinks,
  bare URLs and raw HTML become plain text that shows the URL, so an answer steered by a planted document cannot make the browser
  fetch ``https://evil.example/?q=secret``. Code, tables and math are kept.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from ragchat.answer.sanitize import safe_markdown

# Gradio's Chatbot renders GitHub-flavoured Markdown, which turns bare URLs into links: the page
# asks the sanitizer to make them code too (``bare_urls=True``).


# ---- small formatting helpers ---------------------------------------------------------------


def human_size(n: int | None) -> str:
    if not n:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def short_date(when: datetime | None) -> str:
    if when is None:
        return ""
    if when.tzinfo is None:  # SQLite hands back the stored UTC time without its zone
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def page_label(page: int | None) -> str:
    return f"p. {page}" if page is not None else ""


def _snippet(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---- sources panel and passage viewer -------------------------------------------------------

SOURCE_HINT = "Sources of the answer appear here. Click one to read the passage in its page."


def sources_html(cited: Sequence[Mapping], retrieved: Sequence[Mapping] = (), *, pending: bool = False) -> str:
    """The sources panel: cited sources as clickable cards (file, page, passage), then the others
    that were given to the model, folded. Each card carries data-source=n for the click handler."""
    if not cited and not retrieved:
        return f'<div class="rc-sources rc-empty">{html.escape(SOURCE_HINT)}</div>'
    cited_ids = {s["id"] for s in cited}
    others = [s for s in retrieved if s["id"] not in cited_ids]
    parts = ['<div class="rc-sources">']
    if cited:
        parts.append(f'<div class="rc-sources-title">Cited sources <span class="rc-count">{len(cited)}</span></div>')
        parts += [_card(s, cited=True) for s in cited]
    elif pending:
        parts.append('<div class="rc-sources-title">Searching in these passages…</div>')
        parts += [_card(s, cited=False) for s in others]
        others = []
    else:
        parts.append('<div class="rc-sources-title">The answer cites no source</div>')
    if others:
        parts.append(f'<details class="rc-more"><summary>Also given to the model ({len(others)})</summary>')
        parts += [_card(s, cited=False) for s in others]
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def _card(s: Mapping, *, cited: bool) -> str:
    page = page_label(s.get("page"))
    where = f'<span class="rc-page">{html.escape(page)}</span>' if page else ""
    cls = "rc-card rc-cited" if cited else "rc-card"
    return (
        f'<button type="button" class="{cls}" data-source="{int(s["id"])}" title="Show this passage in its page">'
        f'<span class="rc-card-head"><span class="rc-num">{int(s["id"])}</span>'
        f'<span class="rc-file">{html.escape(str(s.get("source", "")))}</span>{where}</span>'
        f'<span class="rc-passage">{html.escape(_snippet(str(s.get("text", "")), 200))}</span>'
        "</button>"
    )


VIEWER_HINT = "Click a source to see its passage highlighted in the page it comes from."


def viewer_placeholder() -> str:
    return f'<div class="rc-viewer rc-empty">{html.escape(VIEWER_HINT)}</div>'


def passage_html(source: Mapping, page_text: str | None, *, original_url: str | None = None,
                 is_pdf: bool = False, page_image: str | None = None, page_note: str | None = None) -> str:
    """The passage in context: the page as a picture with the passage highlighted on it (page_image,
    the URL of ragchat.ui.pageview's route, for PDFs and images), then the page's text with the cited
    passage marked, plus (for PDFs) a link to the stored original at that page, and a fold-out that
    embeds it when there is no picture. page_note: why the page is not drawn (an encrypted PDF), shown
    where the picture would be."""
    name = html.escape(str(source.get("source", "")))
    page = source.get("page")
    passage = str(source.get("text", ""))
    head = (f'<div class="rc-viewer-head"><span class="rc-num">{int(source["id"])}</span>'
            f'<span class="rc-file">{name}</span>'
            + (f'<span class="rc-page">{html.escape(page_label(page))}</span>' if page is not None else "") + "</div>")
    if page_text is None:
        body = ('<p class="rc-note">This document is no longer in the library; here is the passage as it was cited.</p>'
                f'<div class="rc-page-text"><mark class="rc-hl">{html.escape(passage)}</mark></div>')
    else:
        body = f'<div class="rc-page-text">{_highlight(page_text, passage, source.get("start"), source.get("end"))}</div>'
    links = ""
    if original_url:
        target = f"{original_url}#page={page}" if is_pdf and page is not None else original_url
        label = f"Open the PDF at page {page}" if is_pdf and page is not None else "Open the original file"
        links = (f'<div class="rc-viewer-links"><a href="{html.escape(target)}" target="_blank" rel="noopener">{label} ↗</a>'
                 "</div>")
        if is_pdf and not page_image:
            links += (f'<details class="rc-pdf"><summary>Show the PDF page here</summary>'
                      f'<iframe loading="lazy" title="{name}" src="{html.escape(target)}"></iframe></details>')
    picture = ""
    if page_note:
        picture = f'<p class="rc-note rc-page-note">{html.escape(page_note)}</p>'
    elif page_image:
        alt = f"{page_label(page) or 'The page'} of {source.get('source', '')}, with the passage highlighted"
        picture = (f'<div class="rc-page-image"><img src="{html.escape(page_image)}" alt="{html.escape(alt)}" '
                   'decoding="async"></div>')
    return f'<div class="rc-viewer">{head}{links}{picture}{body}</div>'


def _highlight(page_text: str, passage: str, start, end) -> str:
    """page_text with passage wrapped in <mark>. Uses the stored offsets when they still match,
    else searches for the passage, else shows the passage above the page."""
    s = e = None
    if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(page_text) \
            and page_text[start:end] == passage:
        s, e = start, end
    elif passage and (i := page_text.find(passage)) >= 0:
        s, e = i, i + len(passage)
    if s is None:
        return (f'<mark class="rc-hl">{html.escape(passage)}</mark><hr>{html.escape(page_text)}')
    return (html.escape(page_text[:s]) + f'<mark class="rc-hl" id="rc-hl">{html.escape(page_text[s:e])}</mark>'
            + html.escape(page_text[e:]))


# ---- ingestion progress ---------------------------------------------------------------------

_STAGE_LABEL = {
    "queued": "queued",
    "reading": "reading",
    "embedding": "embedding",
    "done": "done",
    "unchanged": "unchanged",
    "failed": "failed",
}


def progress_line(row: Mapping) -> str:
    """One file's status in words: 'embedding 12/40', 'done: 40 chunks', 'failed: reason'."""
    stage = row["stage"]
    if stage == "embedding" and row.get("total"):
        return f"embedding {row['done']}/{row['total']}"
    if stage == "reading" and row.get("message"):
        return str(row["message"])  # a slow step of reading, e.g. "OCR page 3/8"
    if stage == "done":
        return f"done: {row['total']} chunks" if row.get("total") else "done"
    if stage == "unchanged":
        return "unchanged: already in the library"
    if stage == "failed":
        msg = str(row.get("message") or "")
        return msg if msg.startswith("failed") else f"failed: {msg or 'unknown error'}"
    return _STAGE_LABEL.get(stage, stage)


def progress_html(rows: Sequence[Mapping]) -> str:
    if not rows:
        return ""
    parts = ['<div class="rc-progress">']
    for r in rows:
        stage = r["stage"]
        pct = 0
        if stage == "embedding" and r.get("total"):
            pct = int(100 * r["done"] / max(1, r["total"]))
        elif stage in ("done", "unchanged", "failed"):
            pct = 100
        elif stage == "reading":
            pct = 5
        parts.append(
            f'<div class="rc-file-row rc-{html.escape(stage)}" data-stage="{html.escape(stage)}">'
            f'<div class="rc-file-top"><span class="rc-file">{html.escape(r["source"])}</span>'
            f'<span class="rc-stage">{html.escape(progress_line(r))}</span></div>'
            f'<div class="rc-bar"><div style="width:{pct}%"></div></div></div>'
        )
    parts.append("</div>")
    return "".join(parts)


# ---- chat messages --------------------------------------------------------------------------


def answer_markdown(text: str, *, partial: bool = False, error: str | None = None, notice: str | None = None) -> str:
    """What an assistant bubble shows: the safe answer, then notes about how it ended."""
    body = safe_markdown(text, bare_urls=True)
    notes = []
    if partial:
        notes.append("*(stopped: partial answer)*")
    if error and error.strip() != text.strip():
        notes.append(f"⚠️ {safe_markdown(error, bare_urls=True)}")
    if notice:
        notes.append(f"ℹ️ {safe_markdown(notice, bare_urls=True)}")
    return body + ("\n\n" + "\n\n".join(notes) if notes else "")


def chat_messages(rows: Iterable) -> list[dict]:
    """Catalog messages -> Gradio Chatbot messages (role/content dicts)."""
    out = []
    for m in rows:
        meta = m.meta or {}
        if m.role == "user":
            out.append({"role": "user", "content": safe_markdown(m.content, bare_urls=True)})
        else:
            out.append({"role": "assistant", "content": answer_markdown(
                m.content, partial=bool(meta.get("partial")), error=meta.get("error"))})
    return out


def library_rows(docs: Iterable) -> list[list]:
    rows = []
    for d in docs:
        status = d.status if d.status != "failed" else f"failed: {d.error or 'unknown error'}"
        rows.append([d.source, d.collection, d.pages or "", d.chunks or "", human_size(d.size), short_date(d.created_at),
                     status])
    return rows


LIBRARY_HEADERS = ["Name", "Collection", "Pages", "Chunks", "Size", "Added", "Status"]
