"""``WebApp``: what the page's events do. Each callback reads the engine, or asks it to act, and
returns what to show: plain values (lists, strings, dicts) or Gradio updates; ``layout.py`` wires
them to components.

The callbacks are grouped by what they serve: ``library.py`` (documents and ingestion),
``conversations.py`` (saved conversations and the sources panel), ``chat.py`` (answers and the
model picker), ``compare.py`` (the side-by-side view and its votes), ``retrieval_view.py`` (the
retrieval test) and ``evaluation.py`` (evaluation runs). There is no retrieval, prompting or LLM
logic in any of them.
"""

from __future__ import annotations

from ragchat.ingest.jobs import IngestJobs
from ragchat.ingest.watch import Watchers
from ragchat.ui.chat import ChatCallbacks
from ragchat.ui.compare import CompareCallbacks
from ragchat.ui.conversations import ConversationCallbacks
from ragchat.ui.evaluation import EvaluationCallbacks
from ragchat.ui.feedback import FeedbackCallbacks
from ragchat.ui.library import LibraryCallbacks
from ragchat.ui.pageview import PageViews
from ragchat.ui.retrieval_view import RetrievalCallbacks


class WebApp(LibraryCallbacks, ConversationCallbacks, ChatCallbacks, FeedbackCallbacks, CompareCallbacks,
             RetrievalCallbacks, EvaluationCallbacks):
    """The page's callbacks over one engine and the ingestion jobs it shares with the HTTP API."""

    def __init__(self, engine, jobs: IngestJobs, watchers: Watchers | None = None, page_views: PageViews | None = None):
        self.engine = engine
        self.page_views = page_views  # the viewer asks it whether a page can be drawn
        self.settings = engine.settings
        self.jobs = jobs
        self.watchers = watchers  # when the server watches folders: the library shows their progress
