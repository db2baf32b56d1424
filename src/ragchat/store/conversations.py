"""The catalog's conversations: chats and their messages, each owned by a user (or by nobody
when the app runs without login)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update

from ragchat.store.tables import Conversation, Message, now


class Conversations:
    """Mixin of ``Catalog``: conversations and messages."""

    def create_conversation(self, title: str = "New chat", owner: str | None = None) -> str:
        cid = uuid.uuid4().hex
        with self.session() as s, s.begin():
            s.add(Conversation(id=cid, title=title[:256], owner=owner))
        return cid

    def conversations(self, owner: str | None = None) -> list[Conversation]:
        q = select(Conversation).order_by(Conversation.updated_at.desc())
        q = q.where(Conversation.owner.is_(None)) if owner is None else q.where(Conversation.owner == owner)
        with self.session() as s:
            return list(s.scalars(q))

    def conversation(self, cid: str, owner: str | None = None) -> Conversation | None:
        with self.session() as s:
            c = s.get(Conversation, cid)
            return c if c is not None and c.owner == owner else None

    def rename_conversation(self, cid: str, title: str, owner: str | None = None) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Conversation).where(Conversation.id == cid, _owned(owner)).values(title=title[:256]))

    def delete_conversation(self, cid: str, owner: str | None = None) -> None:
        with self.session() as s, s.begin():
            if s.scalar(select(Conversation.id).where(Conversation.id == cid, _owned(owner))):
                s.execute(delete(Message).where(Message.conversation_id == cid))
                s.execute(delete(Conversation).where(Conversation.id == cid))

    def add_message(self, cid: str, role: str, content: str, sources: list | None = None, meta: dict | None = None) -> None:
        with self.session() as s, s.begin():
            s.add(Message(conversation_id=cid, role=role, content=content, sources=sources, meta=meta))
            s.execute(update(Conversation).where(Conversation.id == cid).values(updated_at=now()))

    def messages(self, cid: str) -> list[Message]:
        with self.session() as s:
            return list(s.scalars(select(Message).where(Message.conversation_id == cid).order_by(Message.id)))

    def delete_last_exchange(self, cid: str) -> str | None:
        """Drop the last assistant answer and its question (for "regenerate"); returns the question."""
        with self.session() as s, s.begin():
            rows = list(s.scalars(select(Message).where(Message.conversation_id == cid).order_by(Message.id.desc()).limit(2)))
            if len(rows) == 2 and rows[0].role == "assistant" and rows[1].role == "user":
                for r in rows:
                    s.delete(r)
                return rows[1].content
        return None


def _owned(owner: str | None):
    return Conversation.owner.is_(None) if owner is None else Conversation.owner == owner
