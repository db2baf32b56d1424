"""Question + history -> streamed answer + the sources it cites. Knows nothing of Gradio or the CLI.

Steps: search with the question as it stands, or, when it leans on the previous one ("and its
capacity?", followup.py), with both it and its standalone form, fused; refuse early, in the
question's language, when nothing relevant is found (no invented answer), or when even the closest
passage is far from the question (``chat.unanswered_below``); prompt the LLM with the instruction,
numbered sources that are clearly delimited as data, and the question (earlier turns only for a
follow-up, and never an earlier refusal; prompt.py); stream its tokens through the bounded LLM gate,
stopping a reply that loops (guards.py); then keep the sources the answer cites as [n], adding the
markers a small model forgot (citations.py). Then each sentence is checked against its source
(grounding.py), and the passage the answer rests on is quoted under it (quote.py). A small model's
refusals barely tell answerable questions from the rest, so when the
closest passage is very near the question (``chat.passage_over_refusal``; in a language the embedder
does not read, ``chat.coverage_over_refusal``), a refusal is held back while it streams and gives
way to that passage, quoted. The thresholds were measured (docs/ANSWERS.md).
The answer text is made safe Markdown (sanitize.py) as it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from ragchat.answer import followup, grounding, quote
from ragchat.answer.citations import cite, cited_ids
from ragchat.answer.events import Answer, ChatEvent, Source, source_of
from ragchat.answer.guards import SecretFilter, may_be_refusal, repeated_tail
from ragchat.answer.prompt import excerpt, source_blocks, user_message, worked_examples
from ragchat.answer.refusal import is_refusal
from ragchat.answer.replies import (
    CLOSEST_PASSAGE, CLOSEST_PASSAGE_ZH, NO_DOCUMENTS, NO_DOCUMENTS_ZH, NOT_ANSWERED, NOT_ANSWERED_ZH, NOT_FOUND,
    NOT_FOUND_ZH, chinese, in_language)
from ragchat.answer.sanitize import safe_markdown
from ragchat.core.errors import BusyError, LLMError, RagchatError
from ragchat.core.settings import ChatSettings
from ragchat.llm.chat_model import ResolvedLLM
from ragchat.llm.gate import LLMGate
from ragchat.llm.streaming import stream_text
from ragchat.retrieve.search import Filters, Hit, Retriever

AUTO_SOURCE_TOKENS = 64  # chat.source_tokens "auto" for the built-in model: 4 sources make a ~360-token prompt
AUTO_QUOTE_WORDS = 80  # the closest passage's length when chat.quote_words is 0 (its default)


@dataclass(frozen=True)
class ChatOptions:
    top_k: int | None = None
    temperature: float | None = None
    system_prompt: str | None = None
    model: str | None = None  # "builtin" or an Ollama model name; None = configured provider
    mode: str | None = None  # hybrid | dense | lexical; None = retrieval.mode
    weight: float | None = None  # the dense ranking's share of the fusion, 0-1; None = the settings' weights


class ChatEngine:
    def __init__(self, settings: ChatSettings, retriever: Retriever, llm_for: Callable[[ChatOptions], ResolvedLLM],
                 gate: LLMGate, timeout_s: float, has_documents: Callable[[Filters], bool]):
        self.settings = settings
        self.retriever = retriever
        self.llm_for = llm_for
        self.gate = gate
        self.timeout_s = timeout_s
        self.has_documents = has_documents

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), filters: Filters = Filters(),
               options: ChatOptions = ChatOptions()) -> Iterator[ChatEvent]:
        """history: (role, content) pairs, role "user" or "assistant", oldest first."""
        answer = Answer(question=question.strip())
        llm = self._resolve(answer, question, filters, options)
        if llm is None:
            yield ChatEvent("done", answer=answer)
            return
        yield ChatEvent("status", "searching your documents")
        queries = self.search_queries(question, history, llm)
        answer.question = queries[0]
        context = history if len(queries) > 1 else ()  # only a follow-up sees the chat
        hits = self._search(answer, queries, filters, self.source_count(llm, options), options)
        if hits is None:
            yield ChatEvent("done", answer=answer)
            return
        answer.retrieved = [source_of(i + 1, h) for i, h in enumerate(hits)]
        yield ChatEvent("sources", answer=answer)
        hold = self._hold_refusal(answer, question, hits)
        if hold is None:
            yield ChatEvent("done", answer=answer)
            return
        system = options.system_prompt or self.settings.system_prompt
        quoted = yield from self._generate(answer, question, context, system, llm, hold)
        if answer.text and not answer.partial and not answer.error and not quoted:
            self.ground(answer)
            added = self.add_quote(answer)
            if added:
                yield ChatEvent("token", added)
        if not answer.text and answer.error:
            answer.text = answer.error
        yield ChatEvent("done", answer=answer)

    def _resolve(self, answer: Answer, question: str, filters: Filters, options: ChatOptions) -> ResolvedLLM | None:
        """The LLM to answer with, or None with answer.text set to the reply that ends the chat turn at once."""
        if not answer.question:
            answer.text = "Please type a question."
            return None
        if not self.has_documents(filters):
            answer.text = in_language(question, NO_DOCUMENTS, NO_DOCUMENTS_ZH)
            return None
        try:
            llm = self.llm_for(options)
        except RagchatError as exc:
            answer.error = answer.text = str(exc)
            return None
        answer.provider, answer.model, answer.notice = llm.provider, llm.model_name, llm.notice
        return llm

    def _search(self, answer: Answer, queries: list[str], filters: Filters, k: int | None,
                options: ChatOptions) -> list[Hit] | None:
        """The relevant hits, or None with answer.text and answer.error set when search fails."""
        try:
            return [h for h in self.retriever.search_all(queries, filters, k=k, mode=options.mode, weight=options.weight)
                    if h.relevant]
        except RagchatError as exc:  # shared mode: the Chroma or catalog server is away for now
            answer.error = answer.text = str(exc)
            return None

    def _hold_refusal(self, answer: Answer, question: str, hits: list[Hit]) -> bool | None:
        """Whether a refusal may give way to the closest passage; None, with answer.text set to the
        fixed reply, when nothing relevant was found or the documents are about something else."""
        if not hits:
            answer.text = in_language(question, NOT_FOUND, NOT_FOUND_ZH)
            return None
        low, high = self.settings.similarity_gates(getattr(self.retriever.embedder, "model_id", None), chinese(question))
        closeness = self.retriever.closeness(answer.question, hits)
        if closeness is not None and closeness < low and not any(h.coverage >= 1.0 for h in hits):
            # the documents are about something else (a passage holding every word of a terse query is not)
            answer.text = in_language(question, NOT_ANSWERED, NOT_ANSWERED_ZH)
            return None
        # a refusal may give way to the closest passage: near by cosine, or, in a language the embedder
        # does not read (Chinese with the bundled one), holding most of the question's terms
        return closeness >= high if closeness is not None else hits[0].coverage >= self.settings.coverage_over_refusal

    def _generate(self, answer: Answer, question: str, context: Sequence[tuple[str, str]], system: str,
                  llm: ResolvedLLM, hold: bool) -> Iterator[ChatEvent]:
        """Streams the model's reply into answer.text and answer.sources; returns whether the reply is
        the closest passage quoted in place of a refusal."""
        quoted = False
        parts: list[str] = []
        guard = SecretFilter(system)  # secrets of the system prompt never reach the screen
        try:
            passages = self.passages(answer.question, answer.retrieved, llm)  # may load the model: LLMError
            messages = self.prompt(question, context, answer.retrieved, system, passages)
            with self.gate.slot():
                yield ChatEvent("status", f"answering with {llm.provider} ({llm.model_name})")
                for piece in stream_text(llm, messages, self.timeout_s):
                    piece = guard.feed(piece)
                    if piece:
                        parts.append(piece)
                        repeats = repeated_tail("".join(parts))
                        if repeats:  # a small model stuck in a loop: keep one copy, stop asking
                            parts[:] = ["".join(parts)[:-repeats]]
                            break
                        if hold and may_be_refusal("".join(parts)):
                            continue  # held back while it may still be the refusal sentence
                        yield ChatEvent("token", "".join(parts) if hold else piece)
                        hold = False
                rest = guard.flush()
                if rest:
                    parts.append(rest)
                if hold and is_refusal("".join(parts)):
                    parts[:] = [self.closest_passage(answer)]
                    quoted = True
                if (hold or rest) and "".join(parts):
                    yield ChatEvent("token", "".join(parts) if hold else rest)
        except (LLMError, BusyError) as exc:
            answer.error, answer.busy = str(exc), isinstance(exc, BusyError)
            parts.append(guard.flush())
            answer.partial = bool("".join(parts).strip())
        except GeneratorExit:  # the person pressed stop: keep what was said, marked partial
            answer.partial = True
            raise
        finally:
            answer.text, answer.sources = cite(safe_markdown("".join(parts).strip()), answer.retrieved)
        return quoted

    @staticmethod
    def ground(answer: Answer) -> None:
        """Check each sentence against the sources it cites (grounding.check): citations are moved
        to the source that supports the sentence, and a sentence no source supports is marked."""
        answer.text, verdicts = grounding.check(answer.text, answer.retrieved, question=answer.question)
        cited = cited_ids(answer.text, answer.retrieved)
        answer.sources = [s for s in answer.retrieved if s.id in cited]
        answer.unsupported = [v.sentence for v in verdicts if v.checked and v.supported_by is None]

    def closest_passage(self, answer: Answer) -> str:
        """What replaces the model's refusal when the best source is close to the question: that
        source's passage that best matches the question, quoted and cited."""
        source = answer.retrieved[0]
        text = quote.passage(source.text, answer.question, "", self.settings.quote_words or AUTO_QUOTE_WORDS)
        lead = in_language(answer.question, CLOSEST_PASSAGE, CLOSEST_PASSAGE_ZH)
        return f"{lead}\n\n" + safe_markdown(quote.markdown(text, source.id))

    def add_quote(self, answer: Answer) -> str:
        """Quote, under the answer, the passage that best matches the question, of the best-ranked retrieved
        source, or of the best-ranked cited one when that holds more question terms (quote.source).
        Returns what was added to answer.text ("" for none)."""
        budget = self.settings.quote_words
        if not budget or not answer.retrieved or is_refusal(grounding.UNSUPPORTED_RE.sub("", answer.text)):
            return ""
        source = quote.source(answer.question, answer.sources, answer.retrieved, lambda s: s.text)
        body = grounding.UNSUPPORTED_RE.sub("", answer.text)
        text = quote.passage(source.text, answer.question, body, budget)
        if not text or quote.redundant(text, body):
            return ""
        added = "\n\n" + safe_markdown(quote.markdown(text, source.id))
        answer.text += added
        if source not in answer.sources:
            answer.sources = [s for s in answer.retrieved if s in answer.sources or s is source]
        return added

    def search_queries(self, question: str, history: Sequence[tuple[str, str]], llm: ResolvedLLM) -> list[str]:
        """What to search with, the fullest form first. A question is searched as itself unless it leans on
        the previous one (followup.depends_on_previous: "and its capacity?"); then with the model's
        rewrite (chat.condense "llm") or with both itself and itself joined to the previous question,
        whose hits are fused (an unrelated question never searches with a mixed query alone)."""
        question = question.strip()
        previous = followup.previous_question(history)
        if previous is None or not followup.depends_on_previous(question):
            return [question]
        mode = self.settings.condense
        if mode == "auto":
            mode = "llm" if llm.provider == "ollama" else "concat"
        if mode == "llm":
            msgs = [
                SystemMessage("Rewrite the last question so that it can be understood without the conversation. "
                              "Reply with the rewritten question only."),
                HumanMessage("\n".join(f"{r}: {c}" for r, c in followup.history_for_prompt(history, 2) or [("user", previous)])
                             + f"\nlast question: {question}"),
            ]
            try:
                with self.gate.slot():
                    text = "".join(stream_text(llm, msgs, self.timeout_s)).strip()
                if 0 < len(text) < 4 * len(question) + 200:
                    return [text, question]
            except (LLMError, BusyError):
                pass  # fall back to joining: retrieval still works
        return [f"{previous.strip()} {question}", question]

    def source_count(self, llm: ResolvedLLM, options: ChatOptions) -> int | None:
        """How many sources the LLM reads: the one asked for, else chat.builtin_sources for the
        built-in model, else retrieval.top_k (None)."""
        if options.top_k is not None:
            return options.top_k
        return self.settings.builtin_sources if llm.provider == "llamacpp" and self.settings.builtin_sources else None

    def source_budget(self, llm: ResolvedLLM) -> int | None:
        """Tokens of each source the LLM reads (chat.source_tokens), or None for whole chunks."""
        setting = self.settings.source_tokens
        if setting == "auto":
            return AUTO_SOURCE_TOKENS if llm.provider == "llamacpp" else None
        return setting or None

    def passages(self, query: str, sources: Sequence[Source], llm: ResolvedLLM) -> list[str]:
        """What the LLM reads of each source: the whole chunk, or its excerpt that best matches query."""
        budget = self.source_budget(llm)
        if budget is None:
            return [s.text for s in sources]
        sent: set[str] = set()  # neighbouring chunks overlap: a sentence already sent comes last
        return [excerpt(s.text, query, budget, llm.count_tokens, sent) for s in sources]

    def prompt(self, question: str, history: Sequence[tuple[str, str]], sources: Sequence[Source], system: str,
               passages: Sequence[str] | None = None) -> list[BaseMessage]:
        """The system prompt first, then (``chat.examples``) a worked example in the question's language,
        then the history, then the instruction, the numbered sources between delimiter lines that mark
        them as data, and the question last. What comes before the sources never changes for a
        language, so llama.cpp keeps it cached between questions and only the sources and the question
        are read anew. ``passages``: the text to send for each source (default: the whole chunk).
        (Tried on the 135M built-in model: heavier markup, like XML tags per source, makes it
        echo the markup instead of answering.)"""
        blocks = source_blocks(sources, passages if passages is not None else [s.text for s in sources])
        msgs: list[BaseMessage] = [SystemMessage(system)]
        if self.settings.examples != "off":
            for shown, shown_sources, reply in worked_examples(question, self.settings.examples == "with-refusal"):
                msgs += [HumanMessage(user_message(shown, shown_sources)), AIMessage(reply)]
        for role, content in followup.history_for_prompt(history, self.settings.history_turns):
            msgs.append(HumanMessage(content) if role == "user" else AIMessage(content))
        msgs.append(HumanMessage(user_message(question, blocks)))
        return msgs
