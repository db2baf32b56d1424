"""The app's fixed replies, in English and Chinese, and the pick by the question's language.

These are what ragchat says itself instead of the model: no documents yet, nothing relevant found,
the documents do not answer, and the lead-in to the closest passage; and the exact refusal sentence
the model is told to use. ``refusal.is_refusal`` recognises every one of them.
"""

from __future__ import annotations

from ragchat.core.text import cjk_share

NO_DOCUMENTS = (
    "There are no documents to search yet. Drop PDF, Word, PowerPoint, Excel, CSV, EPUB, e-mail, image, "
    "text, Markdown or HTML files on the page "
    "(or run `ragchat ingest PATH`), then ask again."
)
NO_DOCUMENTS_ZH = ("还没有可以检索的文档。请把 PDF、Word、PowerPoint、Excel、CSV、EPUB、邮件、图片、文本、Markdown 或 HTML "
                   "文件拖到页面上（或运行 `ragchat ingest PATH`），然后再问。")
NOT_FOUND = "I could not find anything about this in your documents, so I won't guess. Try other words, or add a document that covers it."
NOT_FOUND_ZH = "资料中没有找到与这个问题相关的内容，所以不作猜测。请换个说法，或添加相关文档。"
NOT_ANSWERED = ("I could not find the answer in your documents, so I won't guess: the closest passages, under Sources, "
                "do not seem to answer this question. Try other words, or add a document that covers it.")
NOT_ANSWERED_ZH = "资料中没有找到答案：最接近的段落（见来源）似乎没有回答这个问题。请换个说法，或添加相关文档。"
CLOSEST_PASSAGE = "The model found no answer, but this passage of your documents is close to your question:"
CLOSEST_PASSAGE_ZH = "模型没有给出答案，但资料中这一段与问题很接近："
REFUSAL_EN = "I could not find the answer in the documents."  # the sentence the model is told to use
REFUSAL_ZH = "资料中没有找到答案。"

FIXED = (NO_DOCUMENTS, NO_DOCUMENTS_ZH, NOT_FOUND, NOT_FOUND_ZH, NOT_ANSWERED, NOT_ANSWERED_ZH)


def chinese(question: str) -> bool:
    """The question is asked in Chinese (the replies follow it)."""
    return cjk_share(question) >= 0.3


def in_language(question: str, english: str, chinese_text: str) -> str:
    return chinese_text if chinese(question) else english
