"""What people say about answers: thumbs up or down on one answer (``feedback``), and votes between
two set-ups answering the same question side by side (``votes``). Each row has an owner; a user
reads their own rows, an admin (``owner=ALL``) the team's."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import select

from ragchat.store.tables import FeedbackRow, VoteRow

ALL = object()  # every owner's rows: for admins and for the single user of a login-less app
WINNERS = ("a", "b", "tie")


class Feedback:
    """Mixin of ``Catalog``: feedback and votes."""

    def add_feedback(self, *, owner: str | None, rating: int, question: str, answer: str, sources: list,
                     setup: dict, note: str = "", correction: str = "", conversation_id: str | None = None) -> str:
        if rating not in (1, -1):
            raise ValueError("rating must be 1 (thumbs up) or -1 (thumbs down)")
        fid = uuid.uuid4().hex
        with self.session() as s, s.begin():
            s.add(FeedbackRow(id=fid, owner=owner, rating=rating, note=note, correction=correction, question=question,
                              answer=answer, sources=sources, setup=setup, conversation_id=conversation_id))
        return fid

    def amend_feedback(self, fid: str, owner: str | None, *, note: str, correction: str) -> bool:
        """Add a note and a correction to one's own feedback; False when it is not theirs (or gone)."""
        with self.session() as s, s.begin():
            row = s.get(FeedbackRow, fid)
            if row is None or row.owner != owner:
                return False
            row.note, row.correction = note, correction
        return True

    def feedback(self, owner=ALL) -> list[FeedbackRow]:
        """Oldest first: the user's own rows, or with ALL everyone's."""
        q = select(FeedbackRow).order_by(FeedbackRow.created_at, FeedbackRow.id)
        if owner is not ALL:
            q = q.where(FeedbackRow.owner.is_(None) if owner is None else FeedbackRow.owner == owner)
        with self.session() as s:
            return list(s.scalars(q))

    def add_vote(self, *, owner: str | None, question: str, setup_a: str, setup_b: str, winner: str,
                 blind: bool = False) -> str:
        if winner not in WINNERS:
            raise ValueError(f"winner must be one of {', '.join(WINNERS)}")
        vid = uuid.uuid4().hex
        with self.session() as s, s.begin():
            s.add(VoteRow(id=vid, owner=owner, question=question, setup_a=setup_a[:256], setup_b=setup_b[:256],
                          winner=winner, blind=blind))
        return vid

    def win_rates(self, owner=ALL) -> list[dict]:
        """Per set-up: votes it was in, wins, ties, losses and its win rate (a tie counts half)."""
        q = select(VoteRow)
        if owner is not ALL:
            q = q.where(VoteRow.owner.is_(None) if owner is None else VoteRow.owner == owner)
        tally: dict[str, dict] = defaultdict(lambda: {"votes": 0, "wins": 0, "ties": 0, "losses": 0})
        with self.session() as s:
            for v in s.scalars(q):
                for side, setup in (("a", v.setup_a), ("b", v.setup_b)):
                    t = tally[setup]
                    t["votes"] += 1
                    t["ties" if v.winner == "tie" else "wins" if v.winner == side else "losses"] += 1
        rows = [{"setup": k, **t, "win_rate": round((t["wins"] + t["ties"] / 2) / t["votes"], 3)} for k, t in tally.items()]
        return sorted(rows, key=lambda r: (-r["win_rate"], -r["votes"], r["setup"]))
